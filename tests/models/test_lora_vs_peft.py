"""minidp's LoRA against peft + torch autograd (float64, padded batches, eval mode), and the PEFT files.

A PEFT model with random factors (B ≠ 0) and a perturbed head is saved as an adapter; minidp reads it on top
of the base checkpoint with ``lora={"adapter": DIR}``. Logits and gradients of A, B and the head must agree
to ≤1e-8 relative (max |ours − torch| / max |torch| per tensor, printed); the exports must load in peft /
transformers with the same logits.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from minidp.errors import ConfigError, DataError
from minidp.per_example import LinearRecord
from minidp.privacy.clipping import clipped_grad_sum
from models import load_pretrained, save_pretrained
from models.lora import LoraSpec
from tests.helpers import require_module
from tests.oracle.hf_models import build_hf_classifier, max_rel_diff, random_batch, torch_logits
from tests.oracle.peft_lora import (build_peft_classifier, peft_loss_and_grads, peft_per_example_grads,
                                    trainable_names)

TOL = 1e-8
# (r, alpha, targets, modules_to_save per family): PEFT's default attention pair with PEFT's SEQ_CLS default head
# (the classifier; BERT's pooler frozen), and a wider set (PEFT's suffix rule: "output.dense" selects
# attention.output.dense and the FFN's output.dense) with BERT's pooler named (trained in full; RoBERTa has none)
SETTINGS = {"qv": (4, 8, ["query", "value"], {}),
            "wide_pooler": (3, 5, ["key", "output.dense", "intermediate.dense"], {"bert": ["pooler"]})}


def _kwargs(batch):
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def _assert_close(ours: dict, ref: dict, label: str, tol=TOL):
    assert set(ours) == set(ref), f"{label}: names differ: {sorted(set(ours) ^ set(ref))[:6]}"
    worst = max((max_rel_diff(ours[n], ref[n]), n) for n in ref)
    for name in ref:
        assert np.shape(ours[name]) == np.shape(ref[name]), name
        diff = max_rel_diff(ours[name], ref[name])
        assert diff <= tol, f"{label} {name}: max relative difference {diff:.3e} > {tol}"
    print(f"{label}: {len(ref)} tensors, worst max relative difference {worst[0]:.2e} ({worst[1]})")


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def setup(request, hf_pair, family, tmp_path_factory):
    """(peft model, minidp model read from its saved adapter, batch, base dir, adapter dir)."""
    _, base_dir = hf_pair
    r, alpha, targets, extra = SETTINGS[request.param]
    modules_to_save = extra.get(family)
    peft_model = build_peft_classifier(family, r=r, alpha=alpha, targets=targets, seed=0,
                                       modules_to_save=modules_to_save)
    adapter_dir = tmp_path_factory.mktemp(f"adapter_{family}_{request.param}")
    peft_model.save_pretrained(adapter_dir)
    model = load_pretrained(base_dir, dtype="float64", trainable="lora", lora={"adapter": adapter_dir})
    batch = random_batch(peft_model.base_model.model.config, B=5, T=9, seed=3, token_types=(family == "bert"))
    return peft_model, model, batch, base_dir, adapter_dir


@pytest.fixture(scope="module")
def per_example_ref(setup):
    peft_model, _, batch, _, _ = setup
    return peft_per_example_grads(peft_model, batch)


def test_trainable_set_and_shapes_match_peft(setup, family):
    peft_model, model, _, _, _ = setup
    assert set(model.trainable) == trainable_names(peft_model)
    name = f"{family}.encoder.layer.0.attention.self.value.lora_A.weight"
    if name in model.params:  # the query/value settings
        C = model.config.hidden_size
        assert model.params[name].shape == (4, C)
        assert model.params[name.replace("lora_A", "lora_B")].shape == (C, 4)
    head = {n for n in model.trainable if not n.startswith(f"{family}.encoder.")}
    if family == "roberta":
        assert head == {f"classifier.{m}.{k}" for m in ("dense", "out_proj") for k in ("weight", "bias")}
    else:  # PEFT leaves the pooler frozen unless modules_to_save names it (read from adapter_config.json)
        pooler = {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
        assert head == {"classifier.weight", "classifier.bias"} | (pooler if model.lora.modules_to_save else set())
    print(f"{family}: {len(model.trainable)} trainable tensors, head {sorted(head)}")


@pytest.mark.parametrize("modules_to_save", [None, ["pooler"]])
def test_fresh_adapter_trains_what_peft_trains(hf_pair, family, modules_to_save):
    """trainable="lora" on a fresh adapter: the names PEFT's get_peft_model trains, for either family; BERT's
    pooler only when named (modules_to_save=["pooler"]), which RoBERTa's head does not have (ConfigError)."""
    _, base_dir = hf_pair
    lora = {"r": 4, "alpha": 8, "targets": ["query", "value"], "modules_to_save": modules_to_save or []}
    if modules_to_save and family == "roberta":
        with pytest.raises(ConfigError, match="modules_to_save \\['pooler'\\]"):
            load_pretrained(base_dir, trainable="lora", lora=lora, verbose=False)
        return
    model = load_pretrained(base_dir, dtype="float64", trainable="lora", lora=lora, verbose=False)
    peft_model = build_peft_classifier(family, r=4, alpha=8, targets=["query", "value"],
                                       modules_to_save=modules_to_save)
    assert set(model.trainable) == trainable_names(peft_model)
    assert ("bert.pooler.dense.weight" in model.trainable) == bool(modules_to_save)


def test_logits_match_peft(setup):
    peft_model, model, batch, _, _ = setup
    diff = max_rel_diff(model.forward(**_kwargs(batch)), torch_logits(peft_model, batch))
    print(f"LoRA logits max relative difference {diff:.2e}")
    assert diff <= 1e-10


def test_mean_loss_gradients_match_peft(setup):
    peft_model, model, batch, _, _ = setup
    loss, grads = model.loss_and_grads(**_kwargs(batch), labels=batch["labels"])
    ref_loss, ref_grads = peft_loss_and_grads(peft_model, batch)
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    _assert_close(grads, ref_grads, "LoRA grad of mean loss")


def test_per_example_grads_match_peft(setup, per_example_ref):
    _, model, batch, _, _ = setup
    ours = model.per_example_grads(**_kwargs(batch), labels=batch["labels"])
    _assert_close(ours, per_example_ref, "LoRA per-example grads")


@pytest.mark.parametrize("clip_method", ["flat", "automatic"])
def test_clipped_sum_equals_clipping_materialised_grads(setup, per_example_ref, clip_method):
    """One-pass clipping (ghost/materialised norms by cost) = clipping torch's materialised per-example grads."""
    _, model, batch, _, _ = setup
    ref = per_example_ref
    B = batch["input_ids"].shape[0]
    ref_norms = np.sqrt(sum((g.reshape(B, -1) ** 2).sum(axis=1) for g in ref.values()))
    C = float(np.median(ref_norms))  # some examples clipped, some not
    c = np.minimum(1.0, C / (ref_norms + 1e-6)) if clip_method == "flat" else C / (ref_norms + 0.01)
    ref_sum = {name: np.tensordot(c, g, axes=(0, 0)) for name, g in ref.items()}
    sums, norms = clipped_grad_sum(model, **_kwargs(batch), labels=batch["labels"], max_grad_norm=C,
                                   clip_method=clip_method)
    assert max_rel_diff(norms, ref_norms) <= TOL
    _assert_close(sums, ref_sum, f"LoRA clipped sum ({clip_method})")


def test_lora_records_ghost_equals_materialised(setup):
    """Each LoRA factor's record: ghost norm = materialised norm, and T=9 makes the cost rule pick both kinds."""
    _, model, batch, _, _ = setup
    _, records = model.per_example_records(**_kwargs(batch), labels=batch["labels"])
    factors = {n: r for n, r in records.items() if ".lora_" in n}
    assert factors and all(isinstance(r, LinearRecord) for r in factors.values())
    for name, record in factors.items():
        full = (record.per_example().reshape(5, -1) ** 2).sum(axis=1)
        assert max_rel_diff(record.ghost_norm_sq(), full) <= 1e-12, name
        assert max_rel_diff(record.norm_sq(), full) <= 1e-12, name
    methods = {r.chosen_method() for r in factors.values()}
    print(f"methods chosen for the LoRA factors: {sorted(methods)}")


def test_adapter_export_round_trips_through_peft(setup, tmp_path):
    """minidp -> adapter dir -> peft.PeftModel.from_pretrained(base) gives minidp's logits; minidp reads it back."""
    torch = require_module("torch")
    peft = require_module("peft")
    transformers = require_module("transformers")
    _, model, batch, base_dir, _ = setup
    trained = load_pretrained(base_dir, dtype="float64", trainable="lora", lora={"adapter": setup[4]})
    rng = np.random.default_rng(5)
    for name in trained.trainable:  # as if trained: move every factor and the head
        trained.params[name] = trained.params[name] + 0.05 * rng.standard_normal(trained.params[name].shape)
    out = tmp_path / "adapter"
    save_pretrained(trained, out)
    written = json.loads((out / "adapter_config.json").read_text())
    assert written["peft_type"] == "LORA" and written["r"] == trained.lora.r
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        base_dir, dtype=torch.float64, attn_implementation="eager")
    reloaded = peft.PeftModel.from_pretrained(base, out).eval()
    ours = trained.forward(**_kwargs(batch))
    diff = max_rel_diff(ours, torch_logits(reloaded, batch))
    print(f"adapter -> peft logits max relative difference {diff:.2e}")
    assert diff <= 1e-10
    assert max_rel_diff(ours, model.forward(**_kwargs(batch))) > 1e-3  # the change is visible
    again = load_pretrained(base_dir, dtype="float64", trainable="lora", lora={"adapter": out})
    assert all(np.array_equal(again.params[n], trained.params[n]) for n in trained.params)


def test_merged_model_loads_in_transformers(setup, tmp_path):
    """merge_lora(): W + (α/r)·B A; the saved plain checkpoint loads in transformers with the same logits."""
    torch = require_module("torch")
    transformers = require_module("transformers")
    _, model, batch, _, _ = setup
    merged = model.merge_lora()
    assert merged.lora is None and not any(".lora_" in n for n in merged.params)
    save_pretrained(merged, tmp_path)
    assert not (tmp_path / "adapter_config.json").exists()
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, dtype=torch.float64, attn_implementation="eager").eval()
    ours = model.forward(**_kwargs(batch))
    assert max_rel_diff(merged.forward(**_kwargs(batch)), ours) <= 1e-12
    diff = max_rel_diff(torch_logits(reloaded, batch), ours)
    print(f"merged -> transformers logits max relative difference {diff:.2e}")
    assert diff <= 1e-10


def test_fresh_adapter_starts_at_the_base_model(hf_pair, family):
    """B = 0: a fresh adapter leaves the logits unchanged; A ~ U(±1/√d_in); seeded."""
    hf_model, base_dir = hf_pair
    lora = {"r": 8, "alpha": 16, "targets": ["query", "value"], "dropout": 0.0}
    model = load_pretrained(base_dir, dtype="float64", trainable="lora", lora=lora, seed=3)
    batch = random_batch(hf_model.config, B=3, T=7, seed=1)
    assert max_rel_diff(model.forward(**_kwargs(batch)), torch_logits(hf_model, batch)) <= 1e-10
    C = model.config.hidden_size
    factors = [n for n in model.params if ".lora_" in n]
    assert len(factors) == 2 * 2 * model.config.num_hidden_layers
    for name in factors:
        value = model.params[name]
        if ".lora_B." in name:
            assert value.shape == (C, 8) and not value.any()
        else:
            assert value.shape == (8, C) and np.abs(value).max() <= 1 / np.sqrt(C) and value.std() > 0
    again = load_pretrained(base_dir, dtype="float64", trainable="lora", lora=lora, seed=3)
    assert all(np.array_equal(again.params[n], model.params[n]) for n in factors)
    # the very first step moves B only (∇A ∝ B = 0), as in Hu et al.
    _, grads = model.loss_and_grads(**_kwargs(batch), labels=np.zeros(3, dtype=np.int64))
    assert all(not grads[n].any() for n in factors if ".lora_A." in n)
    assert all(grads[n].any() for n in factors if ".lora_B." in n)


def test_bad_lora_arguments_name_the_problem(hf_pair, tmp_path):
    _, base_dir = hf_pair
    with pytest.raises(ConfigError, match="unknown key"):
        load_pretrained(base_dir, trainable="lora", lora={"rank": 8})
    with pytest.raises(ConfigError, match="r=0"):
        load_pretrained(base_dir, trainable="lora", lora={"r": 0})
    with pytest.raises(ConfigError, match="select no linear layer"):
        load_pretrained(base_dir, trainable="lora", lora={"targets": ["qkv"]})
    with pytest.raises(ConfigError, match="head"):
        load_pretrained(base_dir, trainable="lora", lora={"targets": ["dense"]})
    with pytest.raises(ConfigError, match="cannot be given with 'adapter'"):
        load_pretrained(base_dir, trainable="lora", lora={"adapter": tmp_path, "r": 4})
    with pytest.raises(ConfigError, match="needs a model with LoRA"):
        load_pretrained(base_dir, trainable="lora")
    with pytest.raises(DataError, match="adapter_config.json: missing"):
        load_pretrained(base_dir, trainable="lora", lora={"adapter": tmp_path})


def test_bad_adapter_files_name_the_field(setup, tmp_path):
    _, model, _, base_dir, _ = setup
    out = tmp_path / "a"
    save_pretrained(model, out)
    with pytest.raises(DataError, match="a PEFT LoRA adapter, not a checkpoint"):
        load_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    (out / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(DataError, match="use_dora=True is not supported"):
        load_pretrained(base_dir, trainable="lora", lora={"adapter": out})
    (out / "adapter_config.json").write_text(json.dumps({**config, "r": config["r"] + 1}))
    with pytest.raises(DataError, match="has shape"):
        load_pretrained(base_dir, trainable="lora", lora={"adapter": out})


def test_lora_spec_defaults_and_scaling():
    spec = LoraSpec()
    assert (spec.r, spec.alpha, spec.targets, spec.dropout, spec.scaling) == (8, 16.0, ("query", "value"), 0.0, 2.0)
    assert LoraSpec.from_dict({"r": 4, "alpha": 16, "targets": ["query"]}).scaling == 4.0


def test_peft_lora_dropout_is_read(hf_pair, family, tmp_path):
    """lora_dropout from an adapter is kept; in eval mode it changes nothing, in train mode it draws masks."""
    peft = require_module("peft")
    _, base_dir = hf_pair
    base = build_hf_classifier(family, seed=0)
    config = peft.LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=4, target_modules=["value"], lora_dropout=0.3)
    peft.get_peft_model(base, config).save_pretrained(tmp_path)
    model = load_pretrained(base_dir, dtype="float64", trainable="lora", lora={"adapter": tmp_path})
    assert model.lora.dropout == pytest.approx(0.3)
