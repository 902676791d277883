"""The old path of the run configuration, now minidp/run/config.py: re-exports what scripts call."""
from minidp.run.config import (DataConfig, ModelConfig, OptimConfig, PrivacyConfig, RunConfig,  # noqa: F401
                               TrainConfig)
