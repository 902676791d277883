"""Elementwise passes split over a thread pool on the CPU (NumPy and SciPy ufuncs release the GIL).

BLAS threads only the matrix products; an elementwise pass (erf, exp, x·Φ(x)) runs on one core. For a pass
over a large array this module cuts the array's flat index range into one contiguous block per thread and
runs the same block function on each, in parallel:

    run_blocks(work, size)        work(slice) for slices that cover range(size), in parallel when it pays
    run_blocks(work, rows, elements=rows * width)   the same over the rows of a (rows, width) view (a softmax
                                  reads whole rows: its blocks are rows, its size is counted in elements)

The plain form is ``work(slice(None))``, one call over everything: the fast form applies the same elementwise
arithmetic to each element, only in another order of blocks, so its result is bit-identical (tested in
tests/test_threads.py). It is used for arrays of ≥ MIN_ELEMENTS elements on NumPy; CuPy arrays and small
arrays take the plain form.

The number of threads: ``MINIDP_NUM_THREADS``, else ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` (the BLAS
setting: the study's one-thread processes stay one thread), else the CPU count.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

MIN_ELEMENTS = 1 << 18  # 262,144: below this a pass takes < 1 ms and the pool's hand-off costs more than it saves
_pool: ThreadPoolExecutor | None = None
_pool_threads = 0


def elementwise_threads() -> int:
    """The thread count for elementwise passes (see the module docstring), ≥ 1."""
    for variable in ("MINIDP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return max(1, os.cpu_count() or 1)


def _get_pool(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_threads
    if _pool is None or _pool_threads != threads:
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="minidp-elementwise")
        _pool_threads = threads
    return _pool


def blocks(size: int, parts: int) -> list[slice]:
    """``parts`` contiguous slices covering range(size), sizes differing by at most one."""
    edges = [size * k // parts for k in range(parts + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def run_blocks(work, size: int, *, elements: int | None = None, on_numpy: bool = True,
               threads: int | None = None) -> None:
    """Call ``work(s)`` for slices ``s`` covering range(size): one call ``work(slice(None))`` when threading does
    not pay (``on_numpy`` False, fewer than MIN_ELEMENTS elements (``elements``, default ``size``), or one
    thread), else one block per thread on the pool. ``work`` must write only its own block of its outputs."""
    threads = elementwise_threads() if threads is None else threads
    if not on_numpy or threads <= 1 or size < 2 or (size if elements is None else elements) < MIN_ELEMENTS:
        work(slice(None))
        return
    for future in [_get_pool(threads).submit(work, s) for s in blocks(size, threads)]:
        future.result()  # re-raises a block's exception here
