"""minidp.threads: blocks cover the range; a pass run in blocks on the pool is bit-identical to one call."""
from __future__ import annotations

import numpy as np
import pytest

from minidp import threads
from minidp.nn import activations


@pytest.mark.parametrize("size,parts", [(10, 3), (7, 7), (3, 8), (1 << 20, 2)])
def test_blocks_cover_the_range_once(size, parts):
    covered = np.zeros(size, dtype=int)
    for s in threads.blocks(size, parts):
        covered[s] += 1
    assert (covered == 1).all() and len(threads.blocks(size, parts)) == min(size, parts)


def test_thread_count_from_the_environment(monkeypatch):
    for variable in ("MINIDP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.elementwise_threads() == 3
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert threads.elementwise_threads() == 1  # the study's one-thread processes stay one thread
    monkeypatch.setenv("MINIDP_NUM_THREADS", "4")
    assert threads.elementwise_threads() == 4


def test_small_or_single_thread_runs_one_plain_call():
    calls = []
    threads.run_blocks(calls.append, 100, threads=4)
    threads.run_blocks(calls.append, 1 << 20, threads=1)
    threads.run_blocks(calls.append, 1 << 20, threads=4, on_numpy=False)
    assert calls == [slice(None)] * 3


def test_a_blocks_exception_is_raised():
    def work(s):
        if s.start:
            raise ValueError("block")
    with pytest.raises(ValueError, match="block"):
        threads.run_blocks(work, 1 << 20, threads=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", ["1", "2", "3"])
def test_gelu_in_blocks_is_bit_identical_to_one_thread(monkeypatch, dtype, n_threads):
    """The fast form (blocks on the pool) against the plain form (MINIDP_NUM_THREADS=1: one call over all
    elements), on an array above MIN_ELEMENTS: forward, Φ and backward equal bit for bit."""
    rng = np.random.default_rng(0)
    x = (3 * rng.standard_normal((4, 129, 1031))).astype(dtype)  # 532k elements, blocks not row-aligned
    dy = rng.standard_normal(x.shape).astype(dtype)
    assert x.size >= threads.MIN_ELEMENTS
    monkeypatch.setenv("MINIDP_NUM_THREADS", "1")
    y1, c1 = activations.gelu_forward(x)
    g1 = activations.gelu_backward(c1, dy)
    monkeypatch.setenv("MINIDP_NUM_THREADS", n_threads)
    y2, c2 = activations.gelu_forward(x)
    g2 = activations.gelu_backward(c2, dy)
    assert y2.dtype == dtype and g2.dtype == dtype
    assert np.array_equal(y1, y2) and np.array_equal(c1[1], c2[1]) and np.array_equal(g1, g2)


def test_gelu_of_a_non_contiguous_input():
    x = np.random.default_rng(1).standard_normal((64, 8192))[:, ::2]  # a strided view, 262,144 elements
    y, _ = activations.gelu_forward(x)
    y_plain, _ = activations.gelu_forward(np.ascontiguousarray(x))
    assert np.array_equal(y, y_plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_in_row_blocks_is_bit_identical_to_one_thread(monkeypatch, dtype):
    """softmax forward (both forms) and backward over (B, H, T, T)-like arrays: rows in blocks equal one call."""
    rng = np.random.default_rng(2)
    x = (4 * rng.standard_normal((3, 5, 97, 181))).astype(dtype)  # 263k elements, 1455 rows of 181
    dy = rng.standard_normal(x.shape).astype(dtype)
    assert x.size >= threads.MIN_ELEMENTS
    results = {}
    for n in ("1", "2", "3"):
        monkeypatch.setenv("MINIDP_NUM_THREADS", n)
        y, _ = activations.softmax_forward(x)
        y_in_place, _ = activations.softmax_forward(x.copy(), overwrite_input=True)
        results[n] = (y, y_in_place, activations.softmax_backward(y, dy))
    for n in ("2", "3"):
        assert all(np.array_equal(a, b) for a, b in zip(results["1"], results[n]))
    assert np.array_equal(results["1"][0], results["1"][1])
    assert np.allclose(results["1"][0].sum(-1), 1.0, atol=1e-5)


def test_softmax_over_another_axis_is_unchanged():
    from minidp.numerics import softmax
    x = np.random.default_rng(3).standard_normal((4, 6, 5))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    assert np.allclose(softmax(x, axis=1), e / e.sum(axis=1, keepdims=True), rtol=0, atol=1e-15)
