"""Benchmark one gradient step: minidp DP step vs minidp non-private step vs Opacus, time and peak memory.

    python -m scripts.bench.bench_step [--models minilm,roberta-base] [--seq-lens 128,256] [--repeats 3]
                                 [--json bench_step.json] [--quick] [--device cuda]

On the same random-weight model shapes and the same batch (B=32 random token ids, lengths uniform in
[T/2, T], the rest padding), each method is timed in its own fresh process (warm-up 1, then the median
of ``--repeats``) and its peak memory taken there:

    minidp_nonprivate    model.loss_and_grads                 mean loss, summed gradient (NumPy)
    minidp_dp            clipped_grad_sum(model, ...)         one forward + one backward with per-example
                                                              records, ghost/materialised norms chosen per
                                                              layer by cost, clip, clipped sum (NumPy): the
                                                              bare clipped-gradient part
    minidp_dpstep        minidp.step.DPStep                   the step training runs, on the same fixed batch
                                                              (q = 1, so sampling selects all B examples):
                                                              clipped sum, Gaussian noise, AdamW update, ledger
    minidp_dpstep_rmt    the same with the fast RMT denoiser (κ = 1.02, the default norm correction,
                         as `minidp train` runs it)
    minidp_materialized  the same step with every linear record's norm taken by materialising its
                         per-example gradients (B, d_out, d_in) (the reference path; embeddings keep the
                         ghost norm: materialising (B, V, C) tables is what makes Opacus' hooks heavy)
    torch_nonprivate     transformers *ForSequenceClassification forward + cross-entropy + backward
    opacus_hooks         opacus PrivacyEngine.make_private(grad_sample_mode="hooks", noise_multiplier=0)
                         and one DPOptimizer.pre_step(): per-sample gradients by hooks, per-sample
                         clipping to C, clipped sum (no optimizer update, as for minidp)
    opacus_ghost         the same with grad_sample_mode="ghost" (Opacus' fast gradient clipping: ghost
                         norms, then a second backward pass on the clip-weighted loss)

Models (random weights, float32, no dropout; torch in eval mode, Opacus in train mode with every dropout
probability 0 because its hooks record only in training mode -- the same arithmetic):

    minilm        BERT layout, 6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522
    roberta-base  RoBERTa layout, 12 layers, hidden 768, 12 heads, FFN 3072, vocab 50265

Torch uses ``torch.set_num_threads(os.cpu_count())``; NumPy uses OpenBLAS' own threads (their
environment variables are left as they are). Peak memory: resident set size (RSS), see
``_bench_common.PeakMemory`` (peak RSS during warm-up + repeats minus the RSS after building the model
and inputs), comparable across NumPy and torch.

``--device cuda`` (default: $MINIDP_DEVICE, else cpu) runs minidp on CuPy and torch / Opacus on the same
GPU (a torch without CUDA gives "not supported"). Every timed step ends with a device synchronisation
(``cupy.cuda.Device().synchronize()``, ``torch.cuda.synchronize()``), so the time is the GPU's; peak memory
is then device memory: CuPy's memory pool for minidp, torch's caching allocator for torch and Opacus
(``_bench_common.CupyPoolMemory`` / ``TorchCudaMemory``). Each worker also reports the norm of the gradient it
produced; the summary checks that the DP methods agree (same clipped sum) and that the non-private ones
agree, so every timed method is also shown to compute the same thing.

``--quick`` (under a minute): MiniLM shapes with 2 layers, B=32, T=64, 1 repeat -- said in the output.
The JSON holds the headline setting (MiniLM, B=32, T=128; in --quick the one quick setting) at the top
level (``nonprivate_s``, ``dp_s``, ``opacus_s``, ratios, ``peak_mb``) and every setting in ``settings``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from minidp.backend import RandomStreams, array_module, get_xp, resolve_device
from minidp.denoise.rmt import DEFAULT_NORM_CORRECTION
from minidp.optim import make_optimizer
from minidp.per_example import LinearRecord
from minidp.privacy import make_accountant
from minidp.privacy.clipping import clip_and_sum, clipped_grad_sum
from minidp.step import DenoiseSettings, DPStep
from models.config import EncoderConfig, param_shapes
from models.roberta import SequenceClassifier
from scripts.bench import _bench_common as common
from scripts.bench import _bench_study, _step_profile
from scripts.bench._bench_study import STUDY, STUDY_METHODS
from scripts.bench._shapes import MODELS, NUM_LABELS, init_weights, make_inputs, model_fields, torch_model

REPO = Path(__file__).resolve().parents[2]
METHODS = ("minidp_nonprivate", "minidp_dp", "minidp_dpstep", "minidp_dpstep_rmt", "minidp_materialized",
           "torch_nonprivate", "opacus_hooks", "opacus_ghost")
DP_METHODS = ("minidp_dp", "minidp_materialized", "opacus_hooks", "opacus_ghost")
NONPRIVATE_METHODS = ("minidp_nonprivate", "torch_nonprivate")
HEADLINE = ("minilm", 128)
QUICK = dict(models="minilm", seq_lens="64", repeats=1, layers=2)
TARGETS = {  # the speed targets at the headline setting: (numerator, denominator, at most)
    "time DPStep / torch nonprivate": ("minidp_dpstep", "torch_nonprivate", 1.0),
    "time DPStep / opacus ghost": ("minidp_dpstep", "opacus_ghost", 0.6),
    "time DPStep / minidp nonprivate": ("minidp_dpstep", "minidp_nonprivate", 1.10),
    "peak DPStep / torch nonprivate": ("minidp_dpstep", "torch_nonprivate", 1.1),
}


# --------------------------------------------------------------------------------------------- minidp


def materialized_clipped_sum(model, ids, mask, labels, max_grad_norm: float):
    """``clipped_grad_sum`` with every linear layer's per-example norm taken by materialising g_iᵀa_i.

    Same records, clip factors and clipped sum; only ``LinearRecord.method`` is forced to "materialize"
    (embedding tables keep their ghost norm over equal ids). -> ({name: Σ_i c_i ∇_i}, norms (B,)).
    """
    _, records = model.per_example_records(ids, mask, labels)
    for record in records.values():
        if isinstance(record, LinearRecord):
            record.method = "materialize"
    sums, norms, _, _ = clip_and_sum(records, max_grad_norm)
    return sums, norms


class FixedBatch:
    """The data interface DPStep reads (len, by_length, batch), serving one fixed batch: with q = 1 every
    step samples all B examples, so the benchmark times the training step without sampling noise."""
    def __init__(self, ids, mask, labels):
        self.ids, self.mask, self.labels = ids, mask, labels

    def __len__(self) -> int:
        return len(self.labels)

    def by_length(self, indices):
        return indices

    def batch(self, indices) -> dict:
        return {"input_ids": self.ids[indices], "attention_mask": self.mask[indices], "labels": self.labels[indices]}


def dp_step(model, ids, mask, labels, max_grad_norm: float, denoise: bool, seed: int, device: str = "cpu"):
    """The DPStep training runs (minidp/step.py), over the fixed batch: σ = 1, AdamW, RDP ledger."""
    streams = RandomStreams(seed=seed, device=device)
    model.dropout_rng = streams.dropout
    settings = (DenoiseSettings(kappa=1.02, norm_correction=DEFAULT_NORM_CORRECTION, fallback="noisy",
                                method="fast") if denoise else None)
    return DPStep(model, FixedBatch(ids, mask, labels), noise_multiplier=1.0, max_grad_norm=max_grad_norm,
                  sample_rate=1.0, optimizer=make_optimizer("adamw", 1e-4), streams=streams,
                  accountant=make_accountant("rdp"), delta=1e-5, max_physical_batch=len(labels),
                  denoise=settings, keep_intermediates=False)


def _norm_of(grads: dict) -> float:
    """‖all gradients‖₂, accumulated in float64 chunk by chunk (no temporary the size of a gradient), where
    the gradients live (numpy or cupy); one host copy at the end."""
    total = None
    for g in grads.values():
        xp = array_module(g)
        flat = g.reshape(-1)
        for start in range(0, flat.size, 2**20):
            chunk = flat[start:start + 2**20].astype(xp.float64)
            part = chunk @ chunk
            total = part if total is None else total + part
    return float(total) ** 0.5 if total is not None else 0.0


def minidp_worker(spec: dict) -> tuple:
    """(step function returning a gradient norm, info) for the minidp methods."""
    fields = model_fields(spec)
    config, params = init_weights(fields, spec["seed"])
    device = spec.get("device", "cpu")
    if spec["method"].startswith("minidp_dpstep"):  # DPStep runs in training mode: dropout 0, as for torch
        config = dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = SequenceClassifier(config, params, dtype="float32", device=device)
    del params
    ids, mask, labels = make_inputs(fields, spec["batch"], spec["seq_len"], spec["seed"] + 1)  # host, as in training
    C = spec["max_grad_norm"]
    method = spec["method"]
    xp = get_xp(device)
    synchronize = xp.cuda.Device().synchronize if device == "cuda" else (lambda: None)

    dpstep = dp_step(model, ids, mask, labels, C, denoise=method == "minidp_dpstep_rmt", seed=spec["seed"],
                     device=device) \
        if method.startswith("minidp_dpstep") else None

    def step():
        if dpstep is not None:  # the norm reported: of the per-example gradient norms (the update is noisy)
            record = dpstep()
            synchronize()
            return float(np.linalg.norm(record.per_example_norms))
        if method == "minidp_nonprivate":
            _, grads = model.loss_and_grads(ids, mask, labels)
        elif method == "minidp_dp":
            grads, _ = clipped_grad_sum(model, ids, mask, labels, max_grad_norm=C)
        else:
            grads, _ = materialized_clipped_sum(model, ids, mask, labels, C)
        norm = _norm_of(grads)
        synchronize()  # the step's GPU work is done when the timer stops
        return norm

    info = {"numpy": np.__version__, "device": device}
    if device == "cuda":
        info["cupy"] = xp.__version__
    return step, info


# --------------------------------------------------------------------------------------------- torch


def torch_worker(spec: dict) -> tuple:
    """(step function returning a gradient norm, info) for torch and Opacus."""
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    torch.set_num_threads(os.cpu_count() or 1)
    device = spec.get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} has no CUDA device here")
    fields = model_fields(spec)
    _, params = init_weights(fields, spec["seed"])
    model = torch_model(fields, params).to(device)
    del params
    ids, mask, labels = make_inputs(fields, spec["batch"], spec["seq_len"], spec["seed"] + 1)
    B, T = ids.shape
    # Explicit (B, T) position and token-type ids: Opacus' per-sample hooks need the batch axis on every
    # embedding input (BERT's default position ids are a (1, T) buffer broadcast over the batch).
    position_ids = np.broadcast_to(np.arange(T), (B, T)) if fields["model_type"] == "bert" else None
    inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
              "token_type_ids": torch.zeros((B, T), dtype=torch.int64)}
    if position_ids is not None:
        inputs["position_ids"] = torch.from_numpy(np.ascontiguousarray(position_ids))
    inputs = {k: v.to(device) for k, v in inputs.items()}
    y = torch.from_numpy(labels).to(device)
    C = spec["max_grad_norm"]
    method = spec["method"]
    info = {"torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(), "device": device}

    def grad_norm(scale: float) -> float:
        total = torch.zeros((), dtype=torch.float64, device=device)
        for p in model.parameters():
            if p.grad is not None:
                flat = p.grad.detach().reshape(-1)
                total += torch.dot(flat, flat).double()
        if device == "cuda":
            torch.cuda.synchronize()  # the step's GPU work is done when the timer stops
        return scale * float(total) ** 0.5

    if method == "torch_nonprivate":
        model.eval()

        def step():
            model.zero_grad(set_to_none=True)
            logits = model(**inputs).logits  # (B, K)
            torch.nn.functional.cross_entropy(logits, y).backward()
            return grad_norm(1.0)

        return step, info

    import opacus  # noqa: PLC0415

    info["opacus"] = opacus.__version__
    model.train()  # Opacus' hooks record only in training mode; every dropout probability is 0
    mode = "hooks" if method == "opacus_hooks" else "ghost"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(ids), torch.from_numpy(labels))  # never iterated
    loader = torch.utils.data.DataLoader(dataset, batch_size=B)
    engine = opacus.PrivacyEngine(accountant="rdp")
    made = engine.make_private(module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0,
                               max_grad_norm=C, poisson_sampling=False, grad_sample_mode=mode,
                               criterion=torch.nn.CrossEntropyLoss())
    if mode == "hooks":
        module, dp_optimizer, _ = made
        criterion = torch.nn.CrossEntropyLoss()
    else:
        module, dp_optimizer, criterion, _ = made

    def step():
        dp_optimizer.zero_grad(set_to_none=True)
        logits = module(**inputs).logits  # (B, K)
        criterion(logits, y).backward()
        dp_optimizer.pre_step()  # clip + (zero) noise + divide by B; no parameter update
        return grad_norm(float(B))  # back to the clipped SUM, as minidp reports it

    return step, info


# --------------------------------------------------------------------------------------------- worker


def estimated_opacus_hooks_mb(fields: dict, batch: int) -> float:
    """Opacus' hooks hold every per-sample gradient at once: ~B × (number of parameters) float32."""
    shapes = param_shapes(EncoderConfig(num_labels=NUM_LABELS, **fields))
    n_params = sum(int(np.prod(s)) for s in shapes.values())
    return batch * n_params * 4 / 2**20


def run_measurement(spec: dict) -> dict:
    """Build, warm up once, time ``repeats`` steps and take the peak RSS, in this (fresh) process."""
    ours = spec["method"].startswith("minidp")
    builder = minidp_worker if ours else torch_worker
    try:
        step, info = builder(spec)
    except Exception as err:  # e.g. a mode Opacus does not support for these modules, or no CUDA torch
        return {"status": "not supported", "reason": f"{type(err).__name__}: {err}"[:500]}
    if spec.get("device", "cpu") == "cuda":
        memory = common.CupyPoolMemory() if ours else common.TorchCudaMemory()
    else:
        memory = common.PeakMemory()
    memory.start()
    grad_norm = step()  # warm-up, also the correctness figure
    seconds, all_times = common.median_time(step, spec["repeats"], warmup=0)
    return {"status": "ok", "seconds": seconds, "all_seconds": all_times, "grad_norm": grad_norm,
            **memory.stop(), **info}


# --------------------------------------------------------------------------------------------- driver


def parse_list(text: str, cast=str) -> list:
    return [cast(part.strip()) for part in text.split(",") if part.strip()]


def measure_setting(args, model: str, T: int, log) -> dict:
    spec_base = {"model": model, "seq_len": T, "batch": args.batch, "repeats": args.repeats,
                 "seed": args.seed, "max_grad_norm": args.max_grad_norm, "layers": args.layers,
                 "vocab_size": args.vocab_size, "device": args.device}
    fields = model_fields(spec_base)
    runs = {method: [] for method in args.methods}
    for round_ in range(args.rounds):  # rounds interleave the methods, so a burst of load hits one round
        for method in args.methods:
            spec = {**spec_base, "method": method}
            if method == "opacus_hooks" and args.device == "cpu":  # (host memory; on a GPU Opacus may OOM)
                need = estimated_opacus_hooks_mb(fields, args.batch)
                avail = common.available_memory_mb()
                if avail is not None and need > args.max_mem_fraction * avail:
                    runs[method].append({"status": "skipped", "reason": (
                        f"per-sample gradients need ~{need / 1024:.1f} GiB, more than "
                        f"{args.max_mem_fraction:g} x the {avail / 1024:.1f} GiB available")})
                    log(f"  {method:20s} skipped: {runs[method][-1]['reason']}")
                    continue
            load_before = common.wait_for_low_load(args.max_load, args.max_wait) if args.max_load else \
                common.load_average()
            result = common.run_worker(["-m", "scripts.bench.bench_step", "--worker", json.dumps(spec)],
                                       timeout_s=args.timeout)
            result["load_before"] = load_before
            runs[method].append(result)
            prefix = f"  {method:20s}" + (f" [round {round_ + 1}]" if args.rounds > 1 else "")
            if result.get("status") == "ok":
                log(f"{prefix} {result['seconds']:8.3f} s   peak +{result['peak_delta_mb']:8.1f} MB   "
                    f"|grad| {result['grad_norm']:.6g}   (load {load_before[0] if load_before else '?'})")
            else:
                log(f"{prefix} {result.get('status')}: {result.get('reason')}")
    results = {method: best_round(rs) for method, rs in runs.items()}
    return {"model": model, "seq_len": T, "batch": args.batch, "layers": fields["num_hidden_layers"],
            "hidden": fields["hidden_size"], "vocab": fields["vocab_size"], "methods": results,
            "ratios": ratios(results), "agreement": agreement(results)}


def best_round(rounds: list) -> dict:
    """The fastest ok round (least disturbed by other load), with every round's median kept beside it."""
    ok = [r for r in rounds if r.get("status") == "ok"]
    if not ok:
        return rounds[-1]
    best = dict(min(ok, key=lambda r: r["seconds"]))
    best["round_seconds"] = [r["seconds"] for r in ok]
    best["round_loads"] = [r.get("load_before") for r in ok]
    return best


def _seconds(results: dict, method: str):
    r = results.get(method, {})
    return r.get("seconds") if r.get("status") == "ok" else None


def _peak(results: dict, method: str):
    r = results.get(method, {})
    return r.get("peak_delta_mb") if r.get("status") == "ok" else None


def _div(a, b):
    return None if a is None or b is None or b == 0 else a / b


def ratios(results: dict) -> dict:
    t, m = _seconds, _peak
    return {
        "time_dp_over_nonprivate": _div(t(results, "minidp_dp"), t(results, "minidp_nonprivate")),
        "time_dpstep_over_nonprivate": _div(t(results, "minidp_dpstep"), t(results, "minidp_nonprivate")),
        "time_dpstep_over_torch_nonprivate": _div(t(results, "minidp_dpstep"), t(results, "torch_nonprivate")),
        "time_dpstep_over_opacus_ghost": _div(t(results, "minidp_dpstep"), t(results, "opacus_ghost")),
        "time_dpstep_rmt_over_dpstep": _div(t(results, "minidp_dpstep_rmt"), t(results, "minidp_dpstep")),
        "peak_dpstep_over_torch_nonprivate": _div(m(results, "minidp_dpstep"), m(results, "torch_nonprivate")),
        "time_dp_over_opacus_hooks": _div(t(results, "minidp_dp"), t(results, "opacus_hooks")),
        "time_dp_over_opacus_ghost": _div(t(results, "minidp_dp"), t(results, "opacus_ghost")),
        "time_materialized_over_dp": _div(t(results, "minidp_materialized"), t(results, "minidp_dp")),
        "time_nonprivate_over_torch": _div(t(results, "minidp_nonprivate"), t(results, "torch_nonprivate")),
        "peak_dp_over_nonprivate": _div(m(results, "minidp_dp"), m(results, "minidp_nonprivate")),
        "peak_dp_over_opacus_hooks": _div(m(results, "minidp_dp"), m(results, "opacus_hooks")),
    }


def agreement(results: dict) -> dict:
    """Max relative difference of ‖gradient‖ within the DP methods and within the non-private ones."""
    out = {}
    for label, group in (("dp_methods", DP_METHODS), ("nonprivate_methods", NONPRIVATE_METHODS)):
        norms = {m: results[m]["grad_norm"] for m in group if results.get(m, {}).get("status") == "ok"}
        if len(norms) >= 2:
            values = list(norms.values())
            ref = max(abs(v) for v in values) or 1.0
            out[label] = {"grad_norms": norms, "max_rel_diff": (max(values) - min(values)) / ref}
    return out


def headline(settings: list, quick: bool) -> dict | None:
    for s in settings:
        if (s["model"], s["seq_len"]) == HEADLINE:
            return s
    return settings[0] if (quick and settings) else None


def summary(args, settings: list) -> dict:
    head = headline(settings, args.quick)
    out = {"quick": args.quick, "note": args.note, "device": args.device, "batch": args.batch,
           "repeats": args.repeats,
           "rounds": args.rounds,
           "max_grad_norm": args.max_grad_norm, "cpu_count": os.cpu_count(), "python": platform.python_version(),
           "machine": platform.machine(), "load_average_end": common.load_average(),
           "timing": "warm-up 1, then the median of --repeats, each method in a fresh process; with --rounds R "
                     "the methods run R times interleaved and the fastest round is kept",
           "memory": ("peak RSS minus RSS after building model and inputs, per process (see _bench_common)"
                      if args.device == "cpu" else
                      "device memory, per process: CuPy pool bytes held after the steps minus bytes in use before "
                      "(minidp), torch.cuda.max_memory_allocated minus memory_allocated before (torch, Opacus); "
                      "see _bench_common")}
    if head is not None:
        res = head["methods"]
        out.update({
            "headline_setting": {"model": head["model"], "seq_len": head["seq_len"], "batch": head["batch"],
                                 "layers": head["layers"], "vocab": head["vocab"]},
            "nonprivate_s": _seconds(res, "minidp_nonprivate"), "dp_s": _seconds(res, "minidp_dp"),
            "dpstep_s": _seconds(res, "minidp_dpstep"), "dpstep_rmt_s": _seconds(res, "minidp_dpstep_rmt"),
            "materialized_s": _seconds(res, "minidp_materialized"), "opacus_s": _seconds(res, "opacus_hooks"),
            "opacus_ghost_s": _seconds(res, "opacus_ghost"), "torch_nonprivate_s": _seconds(res, "torch_nonprivate"),
            "ratio_dp_nonprivate": head["ratios"]["time_dp_over_nonprivate"],
            "ratio_dp_opacus": head["ratios"]["time_dp_over_opacus_hooks"],
            "ratio_dp_opacus_ghost": head["ratios"]["time_dp_over_opacus_ghost"],
            "peak_mb": {m: _peak(res, m) for m in METHODS if m in res},
            "targets": targets(res),
        })
    # Per-model DP step time at the shortest measured T (read by scripts/bench/bench_denoise.py --dp-step-json).
    for s in sorted(settings, key=lambda s: s["seq_len"], reverse=True):
        if _seconds(s["methods"], "minidp_dp") is not None:
            out[s["model"]] = {"dp_s": _seconds(s["methods"], "minidp_dp"), "seq_len": s["seq_len"]}
    out["settings"] = settings
    return out


def targets(res: dict) -> dict:
    out = {}
    for name, (num, den, limit) in TARGETS.items():
        get = _peak if name.startswith("peak") else _seconds
        value = _div(get(res, num), get(res, den))
        out[name] = {"value": value, "at_most": limit, "met": None if value is None else value <= limit}
    return out


def print_table(settings: list, log) -> None:
    log("")
    log(f"{'model':13s} {'T':>4s} {'method':20s} {'time s':>9s} {'x nonpriv':>9s} {'peak MB':>9s}  status")
    for s in settings:
        res = s["methods"]
        base = _seconds(res, "minidp_nonprivate")
        for method, r in res.items():
            if r.get("status") == "ok":
                rel = _div(r["seconds"], base)
                log(f"{s['model']:13s} {s['seq_len']:4d} {method:20s} {r['seconds']:9.3f} "
                    f"{rel if rel is not None else float('nan'):9.3f} {r['peak_delta_mb']:9.1f}  ok")
            else:
                log(f"{s['model']:13s} {s['seq_len']:4d} {method:20s} {'-':>9s} {'-':>9s} {'-':>9s}  "
                    f"{r.get('status')}: {r.get('reason')}")
        for label, a in s["agreement"].items():
            log(f"{'':19s}agreement of |grad| among {label}: max rel diff {a['max_rel_diff']:.2e}")


def study_main(args, log) -> int:
    """``--study-setting``: every study method in a fresh process per round; the fastest round of each."""
    methods = [m for m in args.methods if m in STUDY_METHODS] or list(STUDY_METHODS)
    if not (args.shared / "data" / "glue" / "SST-2" / "train.tsv").is_file():
        log(f"bench_step: --shared {args.shared}: no data/glue/SST-2/train.tsv there")
        return 2
    log(f"study setting: {STUDY}; methods {methods}; {args.rounds} round(s) x (1 warm-up + {args.repeats} "
        f"timed steps)")
    runs = {m: [] for m in methods}
    for round_ in range(args.rounds):
        for method in methods:
            spec = {"study": True, "method": method, "seed": args.seed, "repeats": args.repeats,
                    "shared": str(args.shared)}
            load_before = common.load_average()
            result = common.run_worker(["-m", "scripts.bench.bench_step", "--worker", json.dumps(spec)],
                                       timeout_s=args.timeout)
            result["load_before"] = load_before
            runs[method].append(result)
            if result.get("status") == "ok":
                log(f"  {method:18s} [round {round_ + 1}] {result['seconds']:8.2f} s/step  peak +"
                    f"{result['peak_delta_mb']:7.0f} MB  ({result['examples']} examples; load "
                    f"{load_before[0] if load_before else '?'})")
            else:
                log(f"  {method:18s} [round {round_ + 1}] {result.get('status')}: {result.get('reason')}")
    best = {m: best_round(rs) for m, rs in runs.items()}
    torch_s = best.get("torch_nonprivate", {}).get("seconds")
    log("")
    log(f"{'method':18s} {'s/step':>8s} {'x torch':>8s} {'peak MB':>8s}")
    for m, r in best.items():
        if r.get("status") != "ok":
            log(f"{m:18s} {r.get('status')}")
            continue
        ratio = f"{r['seconds'] / torch_s:8.3f}" if torch_s else f"{'n/a':>8s}"
        log(f"{m:18s} {r['seconds']:8.2f} {ratio} {r['peak_delta_mb']:8.0f}")
    d, o = best.get("minidp_dpstep", {}), best.get("opacus_hooks", {})
    if d.get("status") == "ok" and o.get("status") == "ok":
        log(f"DPStep / Opacus hooks (BatchMemoryManager): {d['seconds'] / o['seconds']:.3f}")
    log(f"load average at the end: {common.load_average()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"study_setting": STUDY, "rounds": runs, "best": best,
                                         "load_average_end": common.load_average()}, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


def profile_main(args, model_name: str, T: int, log) -> int:
    """``--profile``: one warm-up DPStep, then one profiled step per pass (scripts/bench/_step_profile.py)."""
    if args.study_setting:  # the study's DPStep: 1024 SST-2 sentences in virtual batches of 32 (_bench_study)

        step, data = _bench_study.study_dpstep({"seed": args.seed, "shared": str(args.shared),
                                                "method": "minidp_dpstep"})
        where = (f"study setting {STUDY} (mean length {data.lengths.mean():.1f} tokens, longest "
                 f"{data.lengths.max()})")
        model_name, T = "minilm", int(data.lengths.max())
        args.batch, args.trainable = len(data), "no-embeddings"
    else:
        spec = {"model": model_name, "layers": args.layers, "vocab_size": args.vocab_size}
        fields = model_fields(spec)
        config, params = init_weights(fields, args.seed)
        config = dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model = SequenceClassifier(config, params, dtype="float32", device=args.device, trainable=args.trainable)
        del params
        ids, mask, labels = make_inputs(fields, args.batch, T, args.seed + 1)
        step = dp_step(model, ids, mask, labels, args.max_grad_norm, denoise=False, seed=args.seed,
                       device=args.device)
        where = f"{model_name} B={args.batch} T={T} trainable={args.trainable}"
    log(f"profile: {where}, BLAS threads "
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'OpenBLAS default')}, load {common.load_average()}")
    step()  # warm-up
    profile = _step_profile.profile_dpstep(step)
    _step_profile.print_profile(profile, log)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        profile.update({"model": model_name, "batch": args.batch, "seq_len": T, "trainable": args.trainable,
                        "load_average_end": common.load_average(), "note": args.note})
        args.json.write_text(json.dumps(profile, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,roberta-base", help=f"comma list of {list(MODELS)}")
    parser.add_argument("--seq-lens", default="128,256", help="comma list of T")
    parser.add_argument("--batch", type=int, default=32, help="B, examples per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every method this many times, interleaved; keep the fastest round")
    parser.add_argument("--layers", type=int, default=None, help="override the number of layers (fewer: faster)")
    parser.add_argument("--vocab-size", type=int, default=None, help=argparse.SUPPRESS)  # tests: smaller table
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {list(METHODS)}")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"),
                        help="cpu (NumPy, torch on CPU) or cuda (CuPy, torch/Opacus on the same GPU); "
                             "default $MINIDP_DEVICE or cpu")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="clipping norm C")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per measurement")
    parser.add_argument("--max-load", type=float, default=None,
                        help="before each measurement wait (up to --max-wait s) for the 1-min load average "
                             "to fall to this")
    parser.add_argument("--max-wait", type=float, default=600.0)
    parser.add_argument("--max-mem-fraction", type=float, default=0.7,
                        help="skip opacus_hooks when its per-sample gradients need more than this fraction "
                             "of the available memory")
    parser.add_argument("--quick", action="store_true",
                        help=f"small and fast: {QUICK} (explicit --models/--seq-lens/--layers still apply)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the comparison: profile one DPStep (time, transient memory and FLOPs "
                             "per part, scripts/bench/_step_profile.py) at the first --models / --seq-lens setting")
    parser.add_argument("--trainable", default="all", choices=("all", "no-embeddings"),
                        help="the DPStep's trainable parameters in --profile (the comparison trains all)")
    parser.add_argument("--study-setting", action="store_true",
                        help="instead of the B=32 comparison: one whole training step at the SST-2 study's "
                             "setting (scripts/bench/_bench_study.py: 1024 real sentences, physical batches of 32, "
                             f"T <= 64, embeddings frozen), methods {list(STUDY_METHODS)}, best of --rounds")
    parser.add_argument("--shared", type=Path,
                        default=Path(os.environ.get("MINIDP_SHARED", REPO.parent / "shared")),
                        help="the shared data folder (SST-2 under data/glue) for --study-setting")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:  # one measurement in this fresh process; JSON on the last stdout line
        spec = json.loads(args.worker)
        if spec.get("study"):

            try:
                result = _bench_study.study_worker(spec)
            except Exception as err:  # noqa: BLE001  (reported as this method's row, like the comparison's)
                result = {"status": "failed", "reason": f"{type(err).__name__}: {err}"[:500]}
            print(json.dumps(result))
        else:
            print(json.dumps(run_measurement(spec)))
        return 0

    explicit = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]))
    args.note = None
    if args.quick:
        if "--models" not in explicit:
            args.models = QUICK["models"]
        if "--seq-lens" not in explicit:
            args.seq_lens = QUICK["seq_lens"]
        if "--repeats" not in explicit:
            args.repeats = QUICK["repeats"]
        if args.layers is None:
            args.layers = QUICK["layers"]

    args.device = resolve_device(args.device)
    models = parse_list(args.models)
    unknown = [m for m in models if m not in MODELS]
    args.methods = parse_list(args.methods)
    bad_methods = [m for m in args.methods if m not in METHODS]
    if unknown or bad_methods:
        parser.error(f"unknown model(s) {unknown} / method(s) {bad_methods}: use {list(MODELS)} / {list(METHODS)}")
    seq_lens = parse_list(args.seq_lens, int)
    if args.quick or args.layers or args.vocab_size:
        args.note = (f"{'QUICK: ' if args.quick else ''}reduced settings -- layers={args.layers or 'full'}, "
                     f"vocab={args.vocab_size or 'full'}, "
                     f"T={seq_lens}, B={args.batch}, repeats={args.repeats}; "
                     f"not the headline setting (MiniLM, B = 32, T = 128)")

    def log(line=""):
        print(line, flush=True)

    log(f"bench_step: device {args.device}, B={args.batch}, repeats={args.repeats} (after 1 warm-up), "
        f"rounds={args.rounds}, C={args.max_grad_norm}, "
        f"{os.cpu_count()} cores, load {common.load_average()}")
    if args.note:
        log(f"NOTE: {args.note}")
    if args.profile:
        return profile_main(args, models[0], seq_lens[0], log)
    if args.study_setting:
        return study_main(args, log)
    settings = []
    for model in models:
        for T in seq_lens:
            log(f"{model} T={T}:")
            settings.append(measure_setting(args, model, T, log))
    result = summary(args, settings)
    print_table(settings, log)
    if result.get("headline_setting"):
        log("")
        log(f"headline {result['headline_setting']}:")
        for name, t in result["targets"].items():
            value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
            met = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
            log(f"  {name:26s} {value:>7s}  (target <= {t['at_most']})  {met}")
    log(f"load average at the end: {result['load_average_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
