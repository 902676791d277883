"""The old path of the checkpoints, now minidp/run/checkpoint.py: re-exports what scripts call."""
from minidp.run.checkpoint import has_checkpoint  # noqa: F401
