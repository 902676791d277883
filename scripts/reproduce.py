"""The old path of the study's runner, kept while a study launched by it is running: it runs
``python -m scripts.study.reproduce`` with the same arguments (the reports print this path as their command)."""
import runpy
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository root, as `python -m` from there has it
runpy.run_module("scripts.study.reproduce", run_name="__main__", alter_sys=True)
