"""Typed experiment configuration: one dataclass per area, composed into `ExperimentConfig`.

The dataclasses hold the defaults; YAML files and `a.b=c` overrides only change them (see `loading.py`).
A field exists only because some code reads it. Backends are `Literal` fields matched in one place.
OmegaConf validates types and `Literal` choices when files are merged into these classes.
Shared areas live in `common.py`, the stages' own settings in `stages.py`; everything is importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from promptcot_pl.config.common import (
    DataConfig, DomainConfig, EngineConfig, ModelConfig, OptimConfig, PromptsConfig, RoleFormat, SamplingConfig,
    TinyModelConfig,
    TrackingConfig, TrainerConfig, VerifyConfig,
)
from promptcot_pl.config.stages import (
    AnalyzeConfig, AnnotateConfig, ColdStartConfig, DPOConfig, EMConfig, EvaluateConfig, SelfPlayConfig, SFTConfig,
    SolverConfig, SynthConfig,
)

STAGE_NAMES = ("seed", "annotate", "coldstart", "em", "solver", "synth", "analyze", "selfplay", "sft", "evaluate")
"""Pipeline stages, in the order they run."""


# Keys that say how to run, not what to compute: a resumed run may change them (recipes/pipeline.py) and the stage
# cache ignores them (recipes/stage_cache.py). Everything else — precision, accumulation, clipping, determinism
# included — changes results. (N processes compute what one does, so devices and strategy are how-to-run.)
HOW_TO_RUN = ("stages", "tracking.", "data.num_workers", "model.cache_dir", "engine.progress", "engine.device",
              "engine.release_during_fits", "verify.workers", "verify.canaries",
              "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
              "trainer.activation_checkpointing", "trainer.fsdp_sharding", "trainer.fsdp_state_dict",
              "trainer.log_every_n_steps", "trainer.checkpoint_every_n_steps", "trainer.enable_progress_bar",
              "trainer.logits_chunk_mib", "trainer.score_tokens", "trainer.memory_fraction")


@dataclass
class ExperimentConfig:
    """One experiment: `promptcot run EXPERIMENT.yaml [a.b=c ...]`."""

    # Experiment name (None: the YAML file's stem); the run directory is `<output_dir>/<name>/<run_name>`.
    name: str | None = None
    run_name: str = "main"
    output_dir: str = "runs"
    seed: int = 0
    # default: the built-in pipeline (annotate replaces seed for a corpus of problems; evaluate needs eval files)
    stages: list[str] = field(default_factory=lambda: [s for s in STAGE_NAMES if s not in ("annotate", "evaluate")])
    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    coldstart: ColdStartConfig = field(default_factory=ColdStartConfig)
    em: EMConfig = field(default_factory=EMConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)
    selfplay: SelfPlayConfig = field(default_factory=SelfPlayConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


__all__ = [
    "TinyModelConfig", "ModelConfig", "PromptsConfig", "RoleFormat", "DomainConfig", "DataConfig", "OptimConfig", "SamplingConfig",
    "EngineConfig", "VerifyConfig", "TrainerConfig", "TrackingConfig", "ColdStartConfig", "EMConfig", "SolverConfig",
    "HOW_TO_RUN", "SynthConfig", "AnalyzeConfig", "DPOConfig", "SelfPlayConfig", "SFTConfig", "AnnotateConfig", "EvaluateConfig", "STAGE_NAMES", "ExperimentConfig"
]
