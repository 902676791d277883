"""The old path of `python -m scripts.bench.bench_denoise` (code comments under minidp/ cite it): runs that module."""
import runpy
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository root, as `python -m` from there has it
runpy.run_module("scripts.bench.bench_denoise", run_name="__main__", alter_sys=True)
