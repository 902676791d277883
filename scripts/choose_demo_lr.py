"""The old path of `python -m scripts.study.choose_demo_lr` (code comments under minidp/ cite it): runs that module."""
import runpy
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository root, as `python -m` from there has it
runpy.run_module("scripts.study.choose_demo_lr", run_name="__main__", alter_sys=True)
