"""Every layer's forward/backward pair and its per-example records on the device, against the host run.

The finite-difference checks (test_layers.py) hold the NumPy code right; here the same calls on device
arrays ("cuda": a GPU, else the CuPy stand-in that refuses implicit host copies) must give the same
numbers, compared through ``to_host`` (float64; 1e-12 relative, which leaves room for a GPU's reduction
order). On "cpu" the comparison is NumPy with itself: it checks the harness.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minidp.backend import array_module, get_xp, to_host
from minidp.nn import activations, attention, dropout, embedding, layernorm, linear, loss
from tests.nn.gradcheck import rel_err

TOL = 1e-12


def up(tree, xp):
    """Host arrays in a (nested) dict/list/tuple uploaded to ``xp``'s device."""
    if isinstance(tree, np.ndarray):
        return xp.asarray(tree)
    if isinstance(tree, dict):
        return {k: up(v, xp) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(up(v, xp) for v in tree)
    return tree


def records_summary(records: dict, B: int, keep=None) -> dict:
    """What a record answers (norms, plain and weighted sums, per-example gradients), as host arrays.

    ``keep`` (B,) bool: first zero the rows of the examples where it is False (keep_examples)."""
    out = {}
    for name, record in records.items():
        xp = array_module(record.norm_sq())
        if keep is not None:
            record.keep_examples(xp.asarray(keep))
        c = xp.asarray(np.linspace(0.3, 1.7, B))
        out[name] = [to_host(record.norm_sq()), to_host(record.weighted_sum(None)),
                     to_host(record.weighted_sum(c)), to_host(record.per_example())]
    return out


def assert_same(device_result, host_result, what=""):
    if isinstance(device_result, dict):
        assert device_result.keys() == host_result.keys(), what
        for key in device_result:
            assert_same(device_result[key], host_result[key], f"{what}.{key}")
    elif isinstance(device_result, (list, tuple)):
        for i, (d, h) in enumerate(zip(device_result, host_result)):
            assert_same(d, h, f"{what}[{i}]")
    else:
        assert type(device_result) is np.ndarray, f"{what}: compare host arrays (to_host)"
        assert device_result.shape == host_result.shape, what
        err = rel_err(device_result, host_result)
        assert err <= TOL, f"{what}: max rel err {err:.2e}"


def both(device, run, *host_args):
    """run(*args) on the host and on ``device`` (args uploaded); both results as host arrays."""
    return run(*up(host_args, get_xp(device))), run(*host_args)


def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("two_d", [False, True])
@pytest.mark.parametrize("method", ["ghost", "materialize"])
def test_linear(device, two_d, method):
    r = rng()
    B, T, d_in, d_out = 3, 5, 4, 6
    shape = (B, d_in) if two_d else (B, T, d_in)
    p = {"weight": r.normal(size=(d_out, d_in)), "bias": r.normal(size=d_out)}
    x, dy = r.normal(size=shape), r.normal(size=shape[:-1] + (d_out,))

    def run(p, x, dy):
        y, cache = linear.forward(p, x)
        dx, records = linear.backward(p, cache, dy)
        records["weight"].method = method
        return [to_host(y), to_host(dx), records_summary(records, B),
                records_summary(linear.backward(p, linear.forward(p, x)[1], dy)[1], B, keep=[True, False, True])]

    assert_same(*both(device, run, p, x, dy), "linear")


def test_embedding(device):
    r = rng()
    B, T, V, C = 3, 6, 4, 5
    p = {"weight": r.normal(size=(V, C))}
    ids, dy = r.integers(0, V, size=(B, T)), r.normal(size=(B, T, C))  # small V: repeated ids

    def run(p, ids, dy):
        y, cache = embedding.forward(p, ids)
        _, records = embedding.backward(p, cache, dy)
        return [to_host(y), records_summary(records, B)]

    assert_same(*both(device, run, p, ids, dy), "embedding")


def test_layernorm(device):
    r = rng()
    B, T, C = 3, 4, 6
    p = {"weight": r.normal(size=C), "bias": r.normal(size=C)}
    x, dy = r.normal(size=(B, T, C)) * 3 + 1, r.normal(size=(B, T, C))

    def run(p, x, dy):
        y, cache = layernorm.forward(p, x, 1e-5)
        dx, records = layernorm.backward(p, cache, dy)
        return [to_host(y), to_host(dx), records_summary(records, B)]

    assert_same(*both(device, run, p, x, dy), "layernorm")


@pytest.mark.parametrize("name", ["gelu", "tanh", "softmax"])
def test_activations(device, name):
    r = rng()
    x, dy = r.normal(size=(3, 4, 5)) * 2, r.normal(size=(3, 4, 5))
    fwd, bwd = getattr(activations, f"{name}_forward"), getattr(activations, f"{name}_backward")

    def run(x, dy):
        y, cache = fwd(x)
        return [to_host(y), to_host(bwd(cache, dy))]

    assert_same(*both(device, run, x, dy), name)


def test_attention(device):
    r = rng()
    B, T, H, D = 3, 5, 2, 3
    C = H * D
    p = {n: {"weight": r.normal(size=(C, C)) / math.sqrt(C), "bias": r.normal(size=C) * 0.1}
         for n in attention.PROJECTIONS}
    x, dy = r.normal(size=(B, T, C)), r.normal(size=(B, T, C))
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, 3:] = 0  # padding
    mask[2, :] = 0  # an example with no real token: uniform attention

    def run(p, x, dy, mask):
        y, cache = attention.forward(p, x, attention.mask_bias(mask, np.float64), H)
        dx, records = attention.backward(p, cache, dy)
        return [to_host(y), to_host(dx), to_host(cache.probs), records_summary(records, B)]

    assert_same(*both(device, run, p, x, dy, mask), "attention")


def test_dropout_draws_on_the_device(device):
    xp = get_xp(device)
    generator = xp.random.default_rng(0)
    x, dy = xp.ones((50, 40)), xp.asarray(rng().normal(size=(50, 40)))
    y, mask = dropout.forward(x, 0.25, generator, training=True)
    assert type(mask) is type(x)  # the mask is drawn where x lives
    host_mask = to_host(mask)
    assert set(np.unique(host_mask)) == {0.0, 1 / 0.75}
    assert abs((host_mask > 0).mean() - 0.75) < 0.05
    assert np.array_equal(to_host(y), to_host(x) * host_mask)
    assert np.array_equal(to_host(dropout.backward(mask, dy)), to_host(dy) * host_mask)


def test_cross_entropy(device):
    r = rng()
    z, labels, w = r.normal(size=(4, 3)) * 3, r.integers(0, 3, size=4), r.random(4)

    def run(z, labels, w):
        losses, cache = loss.forward(z, labels)
        mean, mean_cache = loss.mean_forward(z, labels)
        return [to_host(losses), to_host(loss.backward(cache, w)), to_host(mean),
                to_host(loss.backward(mean_cache, loss.mean_dloss(mean_cache)))]

    assert_same(*both(device, run, z, labels, w), "cross-entropy")
