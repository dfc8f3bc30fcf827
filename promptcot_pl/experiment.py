"""An experiment: the typed `ExperimentConfig` that composes the shared areas (`config/common.py`) and every
stage's settings (`stages/<stage>/config.py`), and its loading with the checks that span areas.

`promptcot run EXPERIMENT.yaml [a.b=c ...]` and `promptcot check` call `load_config`. Every problem of a file is
reported at once, each blamed on the file or override that set the key (`config/loading.py`). The dataclasses
hold the defaults; YAML files and overrides only change them. A field exists only because some code reads it.
This module sits above the stages (it imports their configs); stages get the loaded config through their
`StageContext` and never import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptcot_pl.config.common import (
    STAGE_NAMES,
    DataConfig,
    DomainConfig,
    EngineConfig,
    ModelConfig,
    PromptsConfig,
    TrackingConfig,
    TrainerConfig,
    VerifyConfig,
    config_problems,
)
from promptcot_pl.config.loading import Problems, load_structured
from promptcot_pl.data.sources import source_problem
from promptcot_pl.stages.analyze.config import AnalyzeConfig
from promptcot_pl.stages.annotate.config import AnnotateConfig
from promptcot_pl.stages.coldstart.config import ColdStartConfig
from promptcot_pl.stages.em.config import EMConfig
from promptcot_pl.stages.evaluate.config import EvaluateConfig
from promptcot_pl.stages.selfplay.config import SelfPlayConfig
from promptcot_pl.stages.sft.config import SFTConfig
from promptcot_pl.stages.solver.config import SolverConfig
from promptcot_pl.stages.synth.config import SynthConfig


@dataclass
class ExperimentConfig:
    """One experiment: `promptcot run EXPERIMENT.yaml [a.b=c ...]`."""

    # Experiment name (None: the YAML file's stem); the run directory is `<output_dir>/<name>/<run_name>`.
    name: str | None = None
    run_name: str = "main"
    output_dir: str = "runs"
    seed: int = 0
    # CPU threads per process for torch (fits, scoring, HF generation). None: the cores this process may use
    # divided by the processes a launcher started on this machine. On a shared machine set it to the cores that
    # are free: oversubscribed threads spin against each other (a 7-minute quickstart took 30 on 2 busy cores).
    threads: int | None = None
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


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The typed experiment config for `path` (may be None: defaults only) plus dotlist `overrides`; raises
    `ConfigError` listing every problem found."""
    cfg, problems = load_structured(ExperimentConfig, path, overrides)
    if cfg.name is None:
        cfg.name = Path(path).stem if path is not None else "experiment"
    _check_values(cfg, problems)
    problems.raise_if_any()
    return cfg


def run_dir_of(cfg: ExperimentConfig) -> Path:
    return Path(cfg.output_dir) / str(cfg.name) / cfg.run_name


def stage_input_problems(cfg: ExperimentConfig, todo: list[str]) -> list[str]:
    """What the stages in `todo` need from outside them and lack, one message per key: checked by `promptcot
    check` and at the start of every run (a run of one stage, `promptcot stage NAME`, included;
    tests/test_checkpoints.py)."""
    out = []
    if "evaluate" in todo and not cfg.evaluate.sets:
        out.append("key 'evaluate.sets': stage evaluate needs evaluation files; give evaluate.sets=[path.jsonl, ...]")
    if "sft" not in todo and not (run_dir_of(cfg) / "sft" / "DONE").is_file():  # no SFT student to start from
        for stage, key, value, role in (("selfplay", "selfplay.policy", cfg.selfplay.policy, "starts from an"),
                                        ("evaluate", "evaluate.model", cfg.evaluate.model, "evaluates the better")):
            if stage in todo and value == "sft":
                out.append(f"key '{key}': 'sft' {role} SFT student, but stage sft neither runs now nor has "
                           "finished in this run; add sft to stages")
    return out


OPTIM_KEYS = ("coldstart.optim", "em.e_optim", "em.m_optim", "solver.optim", "sft.optim", "selfplay.optim")


def _at(cfg: ExperimentConfig, key: str) -> Any:
    area, name = key.split(".")
    return getattr(getattr(cfg, area), name)


def _check_values(cfg: ExperimentConfig, problems: Problems) -> None:
    """Checks that types alone cannot express, each naming its key: every area's own (`invalid()` of each config
    dataclass, found by `config_problems`), then those that span areas."""
    if cfg.threads is not None and cfg.threads < 1:
        problems.add("key 'threads': must be at least 1 (or null: from the cores and processes here)")
    unknown = [s for s in cfg.stages if s not in STAGE_NAMES]
    if unknown:
        problems.add(f"key 'stages': unknown stage {unknown[0]!r}; stages are {list(STAGE_NAMES)}")
    order = [STAGE_NAMES.index(s) for s in cfg.stages if s in STAGE_NAMES]
    if order != sorted(set(order)):
        problems.add(f"key 'stages': stages must be unique and in pipeline order {list(STAGE_NAMES)}")
    for key, why in config_problems(cfg):
        problems.add(f"key '{key}': {why}")
    _check_across_areas(cfg, problems)
    for problem in stage_input_problems(cfg, list(cfg.stages)):
        problems.add(problem)
    # the evaluation files of a run that evaluates; other inputs (a seed corpus, concept rows: often fetched after
    # the experiment is written) are read by their stage, whose error names the file or dataset and row
    for i, source in enumerate(cfg.evaluate.sets if "evaluate" in cfg.stages else []):
        if (unreadable := source_problem(source)) is not None:
            problems.add(f"key 'evaluate.sets[{i}]': {unreadable}")
    _check_lengths(cfg, problems)


def _check_across_areas(cfg: ExperimentConfig, problems: Problems) -> None:
    """What one area's settings require of another's."""
    for key in OPTIM_KEYS:
        if cfg.trainer.strategy == "fsdp" and (_at(cfg, key).continue_state or _at(cfg, key).keep_state):
            problems.add(f"key '{key}.continue_state': FSDP shards the optimizer state, which is not kept between "
                         "fits; continue it under trainer.strategy=ddp or on one process")
    if "no_rationale" in cfg.synth.generators and not cfg.em.no_rationale_baseline:
        problems.add("key 'synth.generators': 'no_rationale' samples the p_θ fitted on c → x only, "
                     "which stage em fits when em.no_rationale_baseline is true")
    if cfg.selfplay.optimizer == "grpo" and "selfplay" in cfg.stages:
        if cfg.trainer.strategy == "fsdp":
            problems.add("key 'trainer.strategy': GRPO's engine sync and no-grad scoring call the policy outside "
                         "FSDP's forward; use ddp (or one device) for selfplay.optimizer=grpo")
        if cfg.trainer.accumulate_grad_batches != 1:
            problems.add("key 'trainer.accumulate_grad_batches': GRPO takes one optimizer step per generation batch "
                         "(selfplay.grpo.problems_per_step sets its size): must be 1")
    if cfg.trainer.precision == "bf16-true" and cfg.trainer.bf16_true_optimizer != "kahan":
        problems.add(f"key 'trainer.precision': bf16-true keeps master weights and AdamW states in "
                     "bf16, where updates at the paper's learning rates (1e-6 to 8e-5) round away; use "
                     f"trainer.precision=bf16-mixed (fp32 masters, bf16 compute) with model.dtype="
                     f"{cfg.model.dtype} for inference, or opt in with trainer.bf16_true_optimizer=kahan "
                     "(AdamW with Kahan summation keeps the updates in bf16)")
    engine, fits = cfg.engine.gpu_memory_utilization, cfg.trainer.memory_fraction
    if cfg.engine.backend == "vllm" and not cfg.engine.release_during_fits and engine + fits > 1:
        # one budget per recipe: the engine's share of a GPU and the fits' share fit together
        problems.add(f"keys 'engine.gpu_memory_utilization' ({engine}) + 'trainer.memory_fraction' "
                     f"({fits}) exceed one GPU while the engine stays resident during fits "
                     "(engine.release_during_fits=false); lower one, or let the engine sleep during fits")


def _positions(cfg: ExperimentConfig) -> tuple[int | None, str]:
    """The model's position limit and where it comes from: the tiny config, a local checkpoint's config.json, or
    unknown (a hub name: checked when the model loads)."""
    if cfg.model.path == "tiny":
        return cfg.model.tiny.max_position_embeddings, "model.tiny.max_position_embeddings"
    config = Path(cfg.model.path).expanduser() / "config.json"
    if config.is_file():
        import json

        value = json.loads(config.read_text()).get("max_position_embeddings")
        return (int(value), f"{config}: max_position_embeddings") if value else (None, "")
    return None, ""


def _check_lengths(cfg: ExperimentConfig, problems: Problems) -> None:
    """Every sequence a stage trains on or scores fits where it must, so nothing is cut or dropped by surprise:
    generated tokens leave room for a prompt within `data.max_length`; EM's sequences (a pair plus a sampled
    rationale, twice over for re-tokenisation) fit the model's positions and the vLLM engine's `max_model_len`."""
    length = cfg.data.max_length
    generations = [("synth.sampling.max_new_tokens", cfg.synth.sampling.max_new_tokens, "synth"),
                   ("selfplay.rollouts.max_new_tokens", cfg.selfplay.rollouts.max_new_tokens, "selfplay")]
    if cfg.sft.teacher != "oracle":
        generations.append(("sft.traces.max_new_tokens", cfg.sft.traces.max_new_tokens, "sft"))
    for key, new_tokens, stage in generations:
        if stage in cfg.stages and new_tokens >= length:
            problems.add(f"key '{key}': {new_tokens} new tokens leave no room for the prompt within "
                              f"data.max_length={length} (trained or scored sequences longer than it are dropped); "
                              f"raise data.max_length or lower {key}")
    em_length = length + 2 * cfg.em.max_rationale_tokens if "em" in cfg.stages else length
    limits = [(cfg.engine.max_model_len, "engine.max_model_len")] if cfg.engine.backend == "vllm" else []
    limits.append(_positions(cfg))
    for limit, key in limits:
        if limit is None:
            continue
        if em_length > limit:
            problems.add(f"key 'data.max_length': data.max_length={length}"
                              f"{f' + 2 × em.max_rationale_tokens={cfg.em.max_rationale_tokens}' if 'em' in cfg.stages else ''}"
                              f" = {em_length} tokens exceed {key}={limit}")
        for key2, new_tokens in (("evaluate.max_new_tokens", cfg.evaluate.max_new_tokens),
                                 ("analyze.max_new_tokens", cfg.analyze.max_new_tokens),
                                 ("selfplay.eval.max_new_tokens", cfg.selfplay.eval.max_new_tokens),
                                 ("sft.eval.max_new_tokens", cfg.sft.eval.max_new_tokens)):
            if key2.split(".")[0] in cfg.stages and new_tokens >= limit:
                problems.add(f"key '{key2}': {new_tokens} new tokens leave no room for a prompt "
                                  f"within {key}={limit}")
