"""The old path of the run configuration, now minidp/run/config.py: re-exports what scripts call."""
from minidp.run.config import (DataConfig, DenoiseConfig, ModelConfig, OptimConfig,  # noqa: F401
                               PrivacyConfig, RunConfig, TrainConfig)
