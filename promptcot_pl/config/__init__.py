"""Experiment configuration: typed dataclasses (`schema`) and their loading with clear errors (`loading`)."""

from promptcot_pl.config.loading import ConfigError, flatten, load_config, to_yaml
from promptcot_pl.config.schema import STAGE_NAMES, ExperimentConfig

__all__ = ["STAGE_NAMES", "ConfigError", "ExperimentConfig", "flatten", "load_config", "to_yaml"]
