"""The LoRA layer pair (minidp/nn/lora.py) against float64 finite differences and the plain formula.

Hypothesis draws the shapes; each test prints the max relative error per tensor; the bar is 1e-6 as for the
other layers (every finite difference goes through tests/nn/gradcheck.py). With dropout the mask is drawn
from a generator re-seeded on every call, so the function differentiated numerically is the one the
backward saw.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidp.backend import to_host
from minidp.nn import attention, lora
from minidp.per_example import LinearRecord
from tests.nn.gradcheck import check_grad, check_records, rel_err

SETTINGS = settings(max_examples=15, deadline=None)
dims = st.integers(1, 5)


def _params(rng, d_in, d_out, r):
    return {"weight": rng.normal(size=(d_out, d_in)), "bias": rng.normal(size=d_out),
            lora.LORA_A: rng.normal(size=(r, d_in)), lora.LORA_B: rng.normal(size=(d_out, r))}


@SETTINGS
@given(B=dims, T=dims, d_in=dims, d_out=dims, r=st.integers(1, 3), seed=st.integers(0, 2**16),
       two_d=st.booleans(), drop=st.sampled_from([0.0, 0.4]), method=st.sampled_from(["ghost", "materialize", "auto"]))
def test_lora_layer(B, T, d_in, d_out, r, seed, two_d, drop, method):
    rng = np.random.default_rng(seed)
    p = _params(rng, d_in, d_out, r)
    s = float(rng.uniform(0.5, 3.0))  # α / r
    shape = (B, d_in) if two_d else (B, T, d_in)
    x = rng.normal(size=shape)
    R = rng.normal(size=shape[:-1] + (d_out,))

    def run():
        return lora.forward(p, x, scaling=s, dropout_p=drop, rng=np.random.default_rng(seed + 1),
                            training=True)[0]

    y, cache = lora.forward(p, x, scaling=s, dropout_p=drop, rng=np.random.default_rng(seed + 1), training=True)
    mask = 1.0 if cache.dropout is None else cache.dropout
    plain = x @ p["weight"].T + p["bias"] + s * ((x * mask) @ p[lora.LORA_A].T) @ p[lora.LORA_B].T
    assert np.allclose(y, plain, rtol=0, atol=1e-12)  # forward vs the formula in the docstring
    dx, records = lora.backward(p, cache, R)
    assert set(records) == {"weight", "bias", lora.LORA_A, lora.LORA_B}
    for name in (lora.LORA_A, lora.LORA_B):
        records[name].method = method
    check_grad(lambda: run() * R, x, dx)
    print(check_records(records, p, lambda i: run()[i] * R[i], B))


def test_fresh_layer_is_the_base_layer_and_merge_is_exact():
    rng = np.random.default_rng(0)
    p = _params(rng, 6, 5, 2)
    x = rng.normal(size=(3, 4, 6))
    zero_b = {**p, lora.LORA_B: np.zeros((5, 2))}
    assert np.array_equal(lora.forward(zero_b, x, scaling=2.0)[0], x @ p["weight"].T + p["bias"])
    merged = {"weight": lora.merged_weight(p, 2.0), "bias": p["bias"]}
    assert rel_err(lora.forward(p, x, scaling=2.0)[0], x @ merged["weight"].T + merged["bias"]) <= 1e-13


def test_dropout_only_in_training_mode():
    rng = np.random.default_rng(1)
    p = _params(rng, 6, 5, 2)
    x = rng.normal(size=(3, 4, 6))
    y_eval, cache = lora.forward(p, x, scaling=1.0, dropout_p=0.5, rng=rng, training=False)
    assert cache.dropout is None and cache.x_lora is cache.base.x  # A shares x's Gram matrix with W
    y_train, cache = lora.forward(p, x, scaling=1.0, dropout_p=0.5, rng=rng, training=True)
    assert cache.dropout is not None and not np.allclose(y_eval, y_train)


def test_factor_records_follow_the_linear_cost_rule():
    """A: ghost iff 2T² < r·d_in; B: ghost iff 2T² < d_out·r (the rule of every linear layer)."""
    rng = np.random.default_rng(2)
    p = _params(rng, 64, 16, 4)  # r·d_in = 256, d_out·r = 64
    for T, expected in ((2, ("ghost", "ghost")), (8, ("ghost", "materialize")), (16, ("materialize",) * 2)):
        x = rng.normal(size=(2, T, 64))
        _, records = lora.backward(p, lora.forward(p, x, scaling=1.0)[1], rng.normal(size=(2, T, 16)))
        assert (records[lora.LORA_A].chosen_method(), records[lora.LORA_B].chosen_method()) == expected, T
        assert isinstance(records[lora.LORA_A], LinearRecord)


def test_attention_with_lora_on_query_and_value():
    """attention.forward/backward with LoRA branches on two projections, against finite differences."""
    rng = np.random.default_rng(3)
    B, T, H, D, r = 2, 3, 2, 2, 2
    C = H * D
    p = {name: {"weight": rng.normal(size=(C, C)) * 0.5, "bias": rng.normal(size=C)} for name in attention.PROJECTIONS}
    for name in ("query", "value"):
        p[name].update({lora.LORA_A: rng.normal(size=(r, C)), lora.LORA_B: rng.normal(size=(C, r))})
    settings_ = {name: lora.LoraSettings(scaling=1.5) for name in ("query", "value")}
    x = rng.normal(size=(B, T, C))
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    bias = attention.mask_bias(mask, np.float64)
    R = rng.normal(size=(B, T, C))

    def run():
        return attention.forward(p, x, bias, H, lora=settings_)[0]

    y, cache = attention.forward(p, x, bias, H, lora=settings_)
    dx, records = attention.backward(p, cache, R)
    assert {"query.lora_A.weight", "value.lora_B.weight"} <= set(records)
    assert "key.lora_A.weight" not in records
    check_grad(lambda: run() * R, x, dx)
    flat = {f"{n}.{k}": p[n][k] for n in ("query", "value") for k in (lora.LORA_A, lora.LORA_B)}
    print(check_records({k: records[k] for k in flat}, flat, lambda i: run()[i] * R[i], B))


@pytest.mark.parametrize("method", ["ghost", "materialize"])
def test_lora_layer_on_the_device(device, method):
    """The pair and its records on the device (a GPU, else the CuPy stand-in) equal the host run."""
    from tests.nn.test_layers_device import assert_same, both, records_summary

    rng = np.random.default_rng(0)
    B, T, d_in, d_out, r = 3, 5, 6, 4, 2
    p = _params(rng, d_in, d_out, r)
    x, dy = rng.normal(size=(B, T, d_in)), rng.normal(size=(B, T, d_out))

    def run(p, x, dy):
        y, cache = lora.forward(p, x, scaling=1.5)
        dx, records = lora.backward(p, cache, dy)
        for name in (lora.LORA_A, lora.LORA_B):
            records[name].method = method
        factors = {name: records[name] for name in (lora.LORA_A, lora.LORA_B)}
        return [to_host(y), to_host(dx), records_summary(factors, B), to_host(lora.merged_weight(p, 1.5))]

    assert_same(*both(device, run, p, x, dy), "lora")
