"""bench_step.py --study-setting: one whole training step at the SST-2 study's setting, minidp vs torch / Opacus.

The setting of scripts/study_plan_3epoch.json: MiniLM shapes (random weights: the time does not depend on
their values), 1024 real SST-2 training sentences (a fixed random draw, tokenized by MiniLM's WordPiece
tokenizer, truncated at T ≤ 64), one logical batch of all 1024 processed in physical batches of 32,
embeddings frozen, dropout 0.1 in training mode, C = 0.1, σ = 0.8361 (ε = 3 over 3 epochs), AdamW lr 1e-3.
Each method, in its own fresh process, takes one warm-up step and then ``repeats`` timed steps:

    minidp_dpstep      minidp.step.DPStep over a TokenizedDataset of the 1024 sentences with q = 1: Poisson
                       sampling, virtual batches of 32 sorted by length (each padded to its own longest),
                       per-example norms, clipping, the clipped sum, Gaussian noise, AdamW (the training path)
    minidp_nonprivate  the same DPStep with non_private=True (σ = 0, no clipping: `minidp train --non-private`)
    torch_nonprivate   transformers BertForSequenceClassification, the same length-sorted batches of 32,
                       gradients accumulated, then torch.optim.AdamW
    opacus_hooks       Opacus make_private(grad_sample_mode="hooks") + BatchMemoryManager(max_physical_batch_size
                       = 32) over a DataLoader of the 1024 sentences padded to the longest of them (how an Opacus
                       user runs it), Opacus' DPOptimizer around torch.optim.AdamW with σ and C as above
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from minidp.backend import RandomStreams
from minidp.data import load_task
from minidp.data.batching import TokenizedDataset
from minidp.data.dataset import TextDataset
from minidp.data.tokenize import load_tokenizer
from minidp.optim import make_optimizer
from minidp.privacy import make_accountant
from minidp.step import DPStep
from models.roberta import SequenceClassifier
from scripts.bench import _bench_common as common
from scripts.bench._shapes import init_weights, model_fields, torch_model

STUDY_METHODS = ("minidp_dpstep", "minidp_nonprivate", "torch_nonprivate", "opacus_hooks")
STUDY = dict(model="minilm", sentences=1024, physical_batch=32, max_length=64, max_grad_norm=0.1,
             noise_multiplier=0.8360720726915695, lr=1e-3, dropout=0.1)


def study_sentences(shared_dir, seed: int):
    """(TokenizedDataset of 1024 SST-2 training sentences, tokenizer): a fixed draw, MiniLM's tokenizer."""
    train = load_task("sst2", data_dir=Path(shared_dir) / "data" / "glue", split="train")
    pick = np.sort(np.random.default_rng(seed).choice(len(train), size=STUDY["sentences"], replace=False))
    subset = TextDataset(texts=[train.texts[i] for i in pick], labels=[train.labels[i] for i in pick],
                         label_names=train.label_names, source=train.source)
    tokenizer = load_tokenizer(common.default_minilm_dir())
    return TokenizedDataset(subset, tokenizer, max_length=STUDY["max_length"])


def _minidp_step(spec, data, config, params):

    model = SequenceClassifier(config, params, dtype="float32", trainable="no-embeddings")
    streams = RandomStreams(seed=spec["seed"])
    model.dropout_rng = streams.dropout
    non_private = spec["method"] == "minidp_nonprivate"
    step = DPStep(model, data, noise_multiplier=0.0 if non_private else STUDY["noise_multiplier"],
                  max_grad_norm=STUDY["max_grad_norm"], sample_rate=1.0,
                  optimizer=make_optimizer("adamw", STUDY["lr"]), streams=streams,
                  accountant=make_accountant("rdp"), delta=1e-5, max_physical_batch=STUDY["physical_batch"],
                  keep_intermediates=False, non_private=non_private)

    def run():
        record = step()
        return {"examples": record.batch_size}

    run.step = step  # the DPStep itself (bench_step.py --profile --study-setting profiles it)
    return run


def _torch_step(spec, data, fields, params):
    import torch  # noqa: PLC0415

    torch.set_num_threads(os.cpu_count() or 1)
    model = torch_model(fields, params)
    for module in model.modules():  # the study trains with dropout 0.1 (torch_model builds it without)
        if isinstance(module, torch.nn.Dropout):
            module.p = STUDY["dropout"]
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith("bert.embeddings."))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    N = len(data)
    order = data.by_length(np.arange(N))

    def tensors(indices):
        b = data.batch(indices)
        B, T = b["input_ids"].shape
        return {"input_ids": torch.from_numpy(b["input_ids"]), "attention_mask": torch.from_numpy(b["attention_mask"]),
                "token_type_ids": torch.from_numpy(b["token_type_ids"]),
                "position_ids": torch.from_numpy(np.ascontiguousarray(np.broadcast_to(np.arange(T), (B, T))))}, \
            torch.from_numpy(b["labels"])

    if spec["method"] == "torch_nonprivate":
        optimizer = torch.optim.AdamW(trainable, lr=STUDY["lr"])
        chunks = [tensors(order[s:s + STUDY["physical_batch"]]) for s in range(0, N, STUDY["physical_batch"])]

        def run():
            optimizer.zero_grad(set_to_none=True)
            for inputs, y in chunks:  # Σ over the logical batch of the per-example losses, / N (as qN)
                loss = torch.nn.functional.cross_entropy(model(**inputs).logits, y, reduction="sum") / N
                loss.backward()
            optimizer.step()
            return {"examples": N}

        return run

    import opacus  # noqa: PLC0415
    from opacus.utils.batch_memory_manager import BatchMemoryManager  # noqa: PLC0415

    inputs, y = tensors(np.arange(N))  # one logical batch, padded to its longest sentence
    dataset = torch.utils.data.TensorDataset(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"],
                                             inputs["position_ids"], y)
    loader = torch.utils.data.DataLoader(dataset, batch_size=N)
    engine = opacus.PrivacyEngine(accountant="rdp")
    module, optimizer, loader = engine.make_private(
        module=model, optimizer=torch.optim.AdamW(trainable, lr=STUDY["lr"]), data_loader=loader,
        noise_multiplier=STUDY["noise_multiplier"], max_grad_norm=STUDY["max_grad_norm"], poisson_sampling=False,
        grad_sample_mode="hooks")
    criterion = torch.nn.CrossEntropyLoss()

    def run():
        examples = 0
        with BatchMemoryManager(data_loader=loader, max_physical_batch_size=STUDY["physical_batch"],
                                optimizer=optimizer) as memory_safe_loader:
            for ids, mask, types, positions, labels in memory_safe_loader:
                optimizer.zero_grad(set_to_none=True)
                logits = module(input_ids=ids, attention_mask=mask, token_type_ids=types,
                                position_ids=positions).logits
                criterion(logits, labels).backward()
                optimizer.step()  # Opacus skips the update until the logical batch is complete
                examples += len(labels)
        return {"examples": examples}

    return run


def _study_inputs(spec: dict):
    """(sentences, shape fields, EncoderConfig with the study's dropout, random weights) for ``spec``'s seed."""
    data = study_sentences(spec["shared"], spec["seed"])
    fields = model_fields({"model": STUDY["model"]})
    config, params = init_weights(fields, spec["seed"])
    config = dataclasses.replace(config, hidden_dropout_prob=STUDY["dropout"],
                                 attention_probs_dropout_prob=STUDY["dropout"])
    return data, fields, config, params


def study_dpstep(spec: dict):
    """The study setting's DPStep (spec: seed, shared, method minidp_dpstep | minidp_nonprivate)."""
    data, _, config, params = _study_inputs(spec)
    return _minidp_step(spec, data, config, params).step, data


def study_worker(spec: dict) -> dict:
    """One method at the study setting in this fresh process: warm-up, ``repeats`` timed steps, peak RSS."""
    data, fields, config, params = _study_inputs(spec)
    if spec["method"].startswith("minidp"):
        run = _minidp_step(spec, data, config, params)
    else:
        run = _torch_step(spec, data, fields, params)
    del params
    memory = common.PeakMemory()
    memory.start()
    info = run()  # warm-up
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"status": "ok", "seconds": min(times), "all_seconds": times, **info, **memory.stop(),
            "lengths_mean": float(data.lengths.mean()), "lengths_max": int(data.lengths.max()),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "OpenBLAS default")}
