"""Configuration floor: the settings every stage shares (`common`) and the loading of typed configs with clear
errors (`loading`). The experiment as a whole — shared areas plus each stage's settings — is
`promptcot_pl/experiment.py`, above the stages."""

from promptcot_pl.config.common import (
    HOW_TO_RUN,
    STAGE_NAMES,
    DataConfig,
    DomainConfig,
    EngineConfig,
    ModelConfig,
    OptimConfig,
    PromptsConfig,
    RoleFormat,
    SamplingConfig,
    TinyModelConfig,
    TrackingConfig,
    TrainerConfig,
    VerifyConfig,
)
from promptcot_pl.config.loading import (
    ConfigError,
    Problems,
    check_keys,
    flatten,
    load_structured,
    read_yaml,
    to_yaml,
)

__all__ = [
    "HOW_TO_RUN", "STAGE_NAMES", "ConfigError", "DataConfig", "DomainConfig", "EngineConfig", "ModelConfig",
    "OptimConfig", "Problems", "PromptsConfig", "RoleFormat", "SamplingConfig", "TinyModelConfig", "TrackingConfig",
    "TrainerConfig", "VerifyConfig", "check_keys", "flatten", "load_structured", "read_yaml", "to_yaml",
]
