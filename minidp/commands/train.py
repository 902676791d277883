"""The old path of `minidp train`, now minidp/run/commands/train.py: re-exports what scripts call."""
from minidp.run.commands.train import add_parser, config_from_args  # noqa: F401
