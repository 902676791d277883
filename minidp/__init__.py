"""minidp: differentially private fine-tuning of RoBERTa/BERT from scratch in NumPy/CuPy.

See README.md for the two set-up commands and docs/ for the derivations.

``MINIDP_NUM_THREADS=N`` (environment) sets the BLAS thread count (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS,
MKL_NUM_THREADS, unless those are set themselves). It must be in the environment before NumPy is first
imported, which is the case for the `minidp` command; see docs/performance.md for when 1 thread is faster.
"""
import os

__version__ = "0.1.0"

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _apply_thread_setting() -> None:
    threads = os.environ.get("MINIDP_NUM_THREADS", "").strip()
    if threads:
        for variable in BLAS_THREAD_VARIABLES:
            os.environ.setdefault(variable, threads)


_apply_thread_setting()
