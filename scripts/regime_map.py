"""The old path of the regime map (the generated reports name it): runs ``python -m scripts.study.regime_map``."""
import runpy
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository root, as `python -m` from there has it
runpy.run_module("scripts.study.regime_map", run_name="__main__", alter_sys=True)
