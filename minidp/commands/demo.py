"""The old path of `minidp demo`, now minidp/run/commands/demo.py: re-exports what scripts call."""
from minidp.run.commands.demo import DEMO_DEFAULTS, demo_config, demo_datasets  # noqa: F401
