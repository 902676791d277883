"""minidp's RoBERTa/BERT against transformers + torch autograd (float64, padded batches, eval mode).

Every tensor's max relative difference (max |ours − torch| / max |torch|) is printed and asserted ≤ 1e-8.
"""
from __future__ import annotations

import numpy as np
import pytest

from minidp.backend import to_host
from minidp.per_example import LinearRecord
from minidp.privacy.clipping import clipped_grad_sum
from models import load_pretrained, save_pretrained
from tests.oracle.hf_models import (max_rel_diff, random_batch, torch_logits, torch_loss_and_grads,
                                    torch_per_example_grads)

TOL = 1e-8


def _kwargs(batch):
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def _is_exact_zero(name: str) -> bool:
    """The key bias's gradient is exactly 0: q·(k_s + b) = q·k_s + q·b shifts every score of a query by the
    same amount, and softmax is shift-invariant. Both sides hold rounding noise (~1e-17): compare absolutely."""
    return name.endswith("attention.self.key.bias")


def _assert_close(ours: dict, ref: dict, tol=TOL, label=""):
    assert set(ours) == set(ref), f"{label}: names differ: {sorted(set(ours) ^ set(ref))[:6]}"
    relative = [n for n in ref if not _is_exact_zero(n)]
    worst = max((max_rel_diff(ours[n], ref[n]), n) for n in relative)
    for name in ref:
        assert np.shape(ours[name]) == np.shape(ref[name]), name
        if _is_exact_zero(name):
            diff = float(np.abs(to_host(ours[name]) - to_host(ref[name])).max())
            assert diff <= 1e-12, f"{label} {name}: max absolute difference {diff:.3e} (exact gradient 0)"
            continue
        diff = max_rel_diff(ours[name], ref[name])
        assert diff <= tol, f"{label} {name}: max relative difference {diff:.3e} > {tol}"
    print(f"{label}: {len(ref)} tensors, worst max relative difference {worst[0]:.2e} ({worst[1]})")


@pytest.fixture(scope="module")
def setup(hf_pair, family):
    hf_model, path = hf_pair
    model = load_pretrained(path, dtype="float64")
    batch = random_batch(hf_model.config, B=5, T=9, seed=3, token_types=(family == "bert"))
    return hf_model, model, batch


@pytest.fixture(scope="module")
def torch_refs(setup):
    """(mean loss, grads of the mean, per-example grads) by torch autograd, computed once per family."""
    hf_model, _, batch = setup
    loss, grads = torch_loss_and_grads(hf_model, batch)
    return loss, grads, torch_per_example_grads(hf_model, batch)


def test_loads_every_parameter(setup):
    hf_model, model, _ = setup
    names = {n for n, _ in hf_model.named_parameters()}
    assert set(model.params) == names
    assert model.init_report == []
    for name, p in hf_model.named_parameters():
        assert np.array_equal(to_host(model.params[name]), p.detach().numpy()), name


def test_logits_match(setup):
    hf_model, model, batch = setup
    ours, ref = model.forward(**_kwargs(batch)), torch_logits(hf_model, batch)
    diff = max_rel_diff(ours, ref)
    print(f"logits max relative difference {diff:.2e}")
    assert ours.shape == (5, 3) and diff <= 1e-10


def test_mean_loss_gradients_match(setup, torch_refs):
    hf_model, model, batch = setup
    loss, grads = model.loss_and_grads(**_kwargs(batch), labels=batch["labels"])
    ref_loss, ref_grads, _ = torch_refs
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    _assert_close(grads, ref_grads, label="grad of mean loss")


def test_per_example_grads_match(setup, torch_refs):
    hf_model, model, batch = setup
    ours = model.per_example_grads(**_kwargs(batch), labels=batch["labels"])
    ref = torch_refs[2]
    _assert_close(ours, ref, label="per-example grads")


@pytest.mark.parametrize("clip_method", ["flat", "automatic"])
def test_clipped_grad_sum_matches_torch(setup, torch_refs, clip_method):
    hf_model, model, batch = setup
    ref = torch_refs[2]
    B = batch["input_ids"].shape[0]
    ref_norms = np.sqrt(sum((g.reshape(B, -1) ** 2).sum(axis=1) for g in ref.values()))
    C = float(np.median(ref_norms))  # some examples clipped, some not
    if clip_method == "flat":
        c = np.minimum(1.0, C / (ref_norms + 1e-6))
    else:
        c = C / (ref_norms + 0.01)
    ref_sum = {name: np.tensordot(c, g, axes=(0, 0)) for name, g in ref.items()}
    sums, norms = clipped_grad_sum(model, **_kwargs(batch), labels=batch["labels"], max_grad_norm=C,
                                   clip_method=clip_method)
    norm_diff = max_rel_diff(norms, ref_norms)
    print(f"per-example norms max relative difference {norm_diff:.2e}")
    assert norm_diff <= TOL
    _assert_close(sums, ref_sum, label=f"clipped sum ({clip_method})")


@pytest.mark.parametrize("method", ["ghost", "materialize"])
def test_ghost_and_materialised_norms_agree(setup, method, monkeypatch):
    """Forcing every LinearRecord to one method gives the same norms and sums (auto picks per layer)."""
    _, model, batch = setup
    auto_sums, auto_norms = clipped_grad_sum(model, **_kwargs(batch), labels=batch["labels"], max_grad_norm=0.5)
    init = LinearRecord.__init__

    def forced(self, a, g, method_=None, **kw):
        init(self, a, g, method=method)

    monkeypatch.setattr(LinearRecord, "__init__", forced)
    sums, norms = clipped_grad_sum(model, **_kwargs(batch), labels=batch["labels"], max_grad_norm=0.5)
    assert max_rel_diff(norms, auto_norms) <= 1e-12
    _assert_close(sums, auto_sums, tol=1e-12, label=f"forced {method} vs auto")


@pytest.mark.parametrize("trainable", ["no-embeddings", "classifier"])
def test_trainable_subsets(setup, torch_refs, trainable, family):
    hf_model, model, batch = setup
    ref_loss, ref_grads, ref_per = torch_refs
    sub = load_pretrained(model.source_dir, dtype="float64", trainable=trainable)
    if trainable == "no-embeddings":
        expected = {n for n in ref_grads if ".embeddings." not in n}
    else:
        expected = {n for n in ref_grads if n.startswith("classifier.") or ".pooler." in n}
    assert set(sub.trainable) == expected
    loss, grads = sub.loss_and_grads(**_kwargs(batch), labels=batch["labels"])
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    _assert_close(grads, {n: ref_grads[n] for n in expected}, label=f"{trainable} grads")
    per = sub.per_example_grads(**_kwargs(batch), labels=batch["labels"])
    _assert_close(per, {n: ref_per[n] for n in expected}, label=f"{trainable} per-example")
    # norms over the subset only
    B = batch["input_ids"].shape[0]
    ref_norms = np.sqrt(sum((ref_per[n].reshape(B, -1) ** 2).sum(axis=1) for n in expected))
    _, norms = clipped_grad_sum(sub, **_kwargs(batch), labels=batch["labels"], max_grad_norm=1.0)
    assert max_rel_diff(norms, ref_norms) <= TOL


def test_trainable_list_of_names(setup, torch_refs, family):
    hf_model, model, batch = setup
    names = [f"{family}.encoder.layer.1.output.dense.weight", f"{family}.embeddings.LayerNorm.bias"]
    sub = load_pretrained(model.source_dir, dtype="float64", trainable=names)
    _, ref_grads, _ = torch_refs
    _, grads = sub.loss_and_grads(**_kwargs(batch), labels=batch["labels"])
    _assert_close(grads, {n: ref_grads[n] for n in names}, label="named subset")


def test_save_then_transformers_loads_same_logits(setup, tmp_path, family):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf_model, model, batch = setup
    save_pretrained(model, tmp_path)
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, dtype=torch.float64, attn_implementation="eager").eval()
    assert type(reloaded).__name__ == type(hf_model).__name__
    diff = max_rel_diff(model.forward(**_kwargs(batch)), torch_logits(reloaded, batch))
    print(f"saved -> transformers logits max relative difference {diff:.2e}")
    assert diff <= 1e-10
    again = load_pretrained(tmp_path, dtype="float64")
    assert all(np.array_equal(to_host(again.params[n]), to_host(model.params[n])) for n in model.params)


def test_dropout_in_training_mode_is_seeded(setup):
    """train(): dropout draws from model.dropout_rng; the same stream state gives the same logits."""
    _, model, batch = setup
    from minidp.backend import RandomStreams

    model.train()
    try:
        model.dropout_rng = RandomStreams(seed=7).dropout
        a = model.forward(**_kwargs(batch))
        model.dropout_rng = RandomStreams(seed=7).dropout
        b = model.forward(**_kwargs(batch))
        c = model.forward(**_kwargs(batch))
    finally:
        model.eval()
    a, b, c = to_host(a), to_host(b), to_host(c)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert not np.allclose(a, to_host(model.forward(**_kwargs(batch))))


def test_each_linear_record_ghost_equals_materialised(setup):
    """Per record: ghost norm ⟨a_i a_iᵀ, g_i g_iᵀ⟩ equals ‖g_iᵀ a_i‖² from the materialised gradient."""
    _, model, batch = setup
    _, records = model.per_example_records(**_kwargs(batch), labels=batch["labels"])
    linear = {n: r for n, r in records.items() if isinstance(r, LinearRecord)}
    assert len(linear) == 6 * model.config.num_hidden_layers + 2
    worst = 0.0
    for name, record in linear.items():
        ghost = record.ghost_norm_sq()
        full = (record.per_example().reshape(len(ghost), -1) ** 2).sum(axis=1)
        worst = max(worst, max_rel_diff(ghost, full))
    print(f"ghost vs materialised norms: worst max relative difference {worst:.2e}")
    assert worst <= 1e-12
