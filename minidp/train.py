"""The old path of the run loop, now minidp/run/train.py: re-exports what scripts call."""
from minidp.run.train import build_model, load_splits, plan_privacy, train  # noqa: F401
