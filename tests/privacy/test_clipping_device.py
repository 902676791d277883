"""Per-example clipping (minidp/privacy/clipping.py) on the device equals the host run, non-finite examples
included, and makes no host copy (on a GPU the non-finite rows are zeroed without asking the host)."""
from __future__ import annotations

import numpy as np

from minidp.backend import device_of, get_xp, to_host
from minidp.per_example import DenseRecord, EmbeddingRecord, LinearRecord, SharedInput
from minidp.privacy.clipping import clip_and_sum
from tests import fake_cupy


def make_records(xp, *, poison: bool):
    """Records of 5 examples sharing one layer input (as query/key/value do); examples 1 and 3 non-finite."""
    rng = np.random.default_rng(0)
    a, g1, g2 = rng.normal(size=(5, 4, 6)), rng.normal(size=(5, 4, 3)), rng.normal(size=(5, 4, 2))
    bias, ids, emb_g = rng.normal(size=(5, 3)), rng.integers(0, 7, size=(5, 4)), rng.normal(size=(5, 4, 6))
    if poison:
        g1[1, 0, 0] = np.nan
        bias[3, 2] = np.inf
    shared = SharedInput(xp.asarray(a))
    return {"q": LinearRecord(shared, xp.asarray(g1)), "k": LinearRecord(shared, xp.asarray(g2), method="materialize"),
            "b": DenseRecord(xp.asarray(bias)), "e": EmbeddingRecord(xp.asarray(ids), xp.asarray(emb_g), 7)}


def test_clip_and_sum_on_the_device_equals_the_host(device):
    xp = get_xp(device)
    for poison in (False, True):
        host = clip_and_sum(make_records(np, poison=poison), 0.7)
        with fake_cupy.count_syncs() as syncs:
            sums, norms, factors, dropped = clip_and_sum(make_records(xp, poison=poison), 0.7)
        assert device_of(norms) == device_of(factors) == device_of(sums["q"]) == device
        if device == "cuda" and fake_cupy.is_installed():
            assert syncs.total == 0  # no host copy inside the clipping
        assert int(dropped) == int(host[3]) == (2 if poison else 0)
        assert np.array_equal(np.isnan(to_host(norms)), np.isnan(host[1]))
        assert np.allclose(to_host(norms), host[1], rtol=1e-12, atol=0, equal_nan=True)
        assert np.allclose(to_host(factors), host[2], rtol=1e-12, atol=0)
        for name in sums:
            assert np.all(np.isfinite(to_host(sums[name])))
            assert np.allclose(to_host(sums[name]), host[0][name], rtol=1e-12, atol=1e-14)


def test_dropped_examples_leave_the_same_sum_as_the_healthy_ones_alone(device):
    xp = get_xp(device)
    sums, _, factors, dropped = clip_and_sum(make_records(xp, poison=True), 0.7)
    healthy = [0, 2, 4]
    records = make_records(np, poison=True)
    for record in records.values():
        for attr in ("g", "grads", "ids"):
            if hasattr(record, attr):
                setattr(record, attr, getattr(record, attr)[healthy])
        if isinstance(record, LinearRecord):
            record.a = SharedInput(record.a.a[healthy])
    reference = clip_and_sum(records, 0.7)[0]
    assert to_host(factors)[[1, 3]].tolist() == [0.0, 0.0]
    for name in sums:
        assert np.allclose(to_host(sums[name]), reference[name], rtol=1e-12, atol=1e-14)
