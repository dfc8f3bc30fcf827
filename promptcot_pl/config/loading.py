"""Load an experiment: dataclass defaults ⊕ YAML file ⊕ `a.b=c` overrides → a validated `ExperimentConfig`.

OmegaConf does the merging and the type / `Literal` checks; this module adds what users need from the errors:
the file (or override) the bad key came from, its full dotted path and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from promptcot_pl.config.schema import STAGE_NAMES, ExperimentConfig


# Keys that moved or changed meaning: naming the new key beats "did you mean" on the old one.
RENAMED = {"em.score_batch_size": "trainer.score_tokens (scoring batches are sized by token positions now)"}


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the source and the key."""


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Return the typed experiment config for `path` (may be None: defaults only) plus dotlist `overrides`."""
    layers: list[tuple[str, DictConfig]] = []
    if path is not None:
        layers.append((str(path), read_yaml(Path(path))))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. coldstart.epochs=3")
        layers.append((f"override {item!r}", OmegaConf.from_dotlist([item])))

    merged = OmegaConf.structured(ExperimentConfig)
    for source, layer in layers:
        check_keys(OmegaConf.to_container(layer), ExperimentConfig, prefix="", source=source)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", None) or "?"
            reason = str(err).splitlines()[0]
            raise ConfigError(f"{source}: key '{key}': {reason}") from None

    cfg: ExperimentConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    if cfg.name is None:
        cfg.name = Path(path).stem if path is not None else "experiment"
    _check_values(cfg, source=str(path) if path is not None else "config")
    return cfg


def read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file")
    try:
        node = OmegaConf.load(path)
    except (YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return node


def check_keys(node: Any, cls: type, prefix: str, source: str) -> None:
    """Raise on the first key of `node` that `cls` (a dataclass) does not have, suggesting the closest one."""
    if not isinstance(node, dict):
        return
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in node.items():
        full = f"{prefix}{key}"
        if full in RENAMED:
            raise ConfigError(f"{source}: key '{full}' was replaced by {RENAMED[full]}")
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys here: {', '.join(names)}"
            raise ConfigError(f"{source}: unknown key '{full}'{hint}")
        origin, args = typing.get_origin(hints[key]), typing.get_args(hints[key])
        if origin is dict and args and dataclasses.is_dataclass(args[-1]) and isinstance(value, dict):
            for name, item in value.items():  # user-named entries, each a dataclass (sweep search spaces)
                check_keys(item, args[-1], prefix=f"{full}.{name}.", source=source)
        elif origin is list and args and dataclasses.is_dataclass(args[0]) and isinstance(value, list):
            for i, item in enumerate(value):
                check_keys(item, args[0], prefix=f"{full}[{i}].", source=source)
        elif (sub := _dataclass_in(hints[key])) is not None:
            check_keys(value, sub, prefix=f"{full}.", source=source)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type inside a hint such as `Foo` or `Foo | None`, else None."""
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _check_values(cfg: ExperimentConfig, source: str) -> None:
    """Checks that types alone cannot express; each error names the key."""
    unknown = [s for s in cfg.stages if s not in STAGE_NAMES]
    if unknown:
        raise ConfigError(f"{source}: key 'stages': unknown stage {unknown[0]!r}; stages are {list(STAGE_NAMES)}")
    order = [STAGE_NAMES.index(s) for s in cfg.stages]
    if order != sorted(set(order)):
        raise ConfigError(f"{source}: key 'stages': stages must be unique and in pipeline order {list(STAGE_NAMES)}")
    if not 0.0 < cfg.domain.heldout_fraction < 1.0:
        raise ConfigError(f"{source}: key 'domain.heldout_fraction': must lie in (0, 1)")
    if cfg.domain.source != "builtin" and not cfg.domain.path:
        raise ConfigError(f"{source}: key 'domain.path': required when domain.source={cfg.domain.source!r}")
    tiny = cfg.model.tiny
    if tiny.num_heads < 1 or tiny.hidden_size % tiny.num_heads:
        raise ConfigError(f"{source}: key 'model.tiny.num_heads': must divide model.tiny.hidden_size")
    if cfg.em.z_mode == "best" and not cfg.em.e_step:
        raise ConfigError(f"{source}: key 'em.z_mode': 'best' takes the E-step's winner, but em.e_step is false")
    if cfg.em.selection == "softmax" and cfg.em.tau <= 0:
        raise ConfigError(f"{source}: key 'em.tau': must be > 0 for softmax selection")
    if len(cfg.coldstart.optim.betas) != 2:
        raise ConfigError(f"{source}: key 'coldstart.optim.betas': expected two numbers")
    bad = [g for g in cfg.synth.generators if g not in ("em", "coldstart", "no_rationale")]
    if bad or not cfg.synth.generators:
        raise ConfigError(f"{source}: key 'synth.generators': expected a non-empty list of 'em', 'coldstart' and/or "
                          f"'no_rationale', got {list(cfg.synth.generators)}")
    if "no_rationale" in cfg.synth.generators and not cfg.em.no_rationale_baseline:
        raise ConfigError(f"{source}: key 'synth.generators': 'no_rationale' samples the p_θ fitted on c → x only, "
                          "which stage em fits when em.no_rationale_baseline is true")
    if not 0.0 < cfg.synth.near_duplicate_threshold < 1.0:
        raise ConfigError(f"{source}: key 'synth.near_duplicate_threshold': must lie in (0, 1)")
    if not 0.0 <= cfg.synth.min_confidence <= 1.0:
        raise ConfigError(f"{source}: key 'synth.min_confidence': must lie in [0, 1]")
    sp = cfg.selfplay
    if not 0.0 <= sp.pass_low < sp.pass_high <= 1.0:
        raise ConfigError(f"{source}: key 'selfplay.pass_high': the window needs 0 <= pass_low < pass_high <= 1, "
                          f"got ({sp.pass_low}, {sp.pass_high})")
    if sp.dpo.beta <= 0:
        raise ConfigError(f"{source}: key 'selfplay.dpo.beta': must be > 0")
    if sp.min_scored_rollouts is not None and not 1 <= sp.min_scored_rollouts <= sp.rollouts.n:
        raise ConfigError(f"{source}: key 'selfplay.min_scored_rollouts': must lie in [1, selfplay.rollouts.n="
                          f"{sp.rollouts.n}], got {sp.min_scored_rollouts}")
    if not 0.0 <= sp.dpo.label_smoothing < 0.5:
        raise ConfigError(f"{source}: key 'selfplay.dpo.label_smoothing': must lie in [0, 0.5)")
    if sp.dpo.label_smoothing and sp.dpo.loss != "sigmoid":
        raise ConfigError(f"{source}: key 'selfplay.dpo.label_smoothing': conservative DPO is a sigmoid loss; "
                          f"selfplay.dpo.loss is {sp.dpo.loss!r}")
    devices = cfg.trainer.devices
    if not (devices == "auto" or devices.isdigit() and int(devices) >= 1):
        raise ConfigError(f"{source}: key 'trainer.devices': expected a number of processes (>= 1) or 'auto', "
                          f"got {devices!r}")
    if cfg.trainer.num_nodes < 1 or cfg.trainer.accumulate_grad_batches < 1:
        raise ConfigError(f"{source}: key 'trainer.num_nodes' and 'trainer.accumulate_grad_batches' must be >= 1")
    bad = [x for x in cfg.sft.sources if x not in ("synth", "seed")]
    if bad or not cfg.sft.sources or len(set(cfg.sft.sources)) != len(cfg.sft.sources):
        raise ConfigError(f"{source}: key 'sft.sources': expected a non-empty list of distinct 'synth' and/or "
                          f"'seed', got {list(cfg.sft.sources)}")
    _check_lengths(cfg, source)
    _check_sampling(cfg, source)
    device = cfg.engine.device
    if not (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device)):
        raise ConfigError(f"{source}: key 'engine.device': expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if cfg.trainer.precision == "bf16-true" and cfg.trainer.bf16_true_optimizer != "kahan":
        raise ConfigError(f"{source}: key 'trainer.precision': bf16-true keeps master weights and AdamW states in "
                          "bf16, where updates at the paper's learning rates (1e-6 to 8e-5) round away; use "
                          f"trainer.precision=bf16-mixed (fp32 masters, bf16 compute) with model.dtype="
                          f"{cfg.model.dtype} for inference, or opt in with trainer.bf16_true_optimizer=kahan "
                          "(AdamW with Kahan summation keeps the updates in bf16)")
    _check_memory_budget(cfg, source)
    if cfg.model.tiny.thinking and cfg.model.tiny.style != "chatml":
        raise ConfigError(f"{source}: key 'model.tiny.thinking': a thinking template exists for "
                          f"model.tiny.style=chatml only, got {cfg.model.tiny.style!r}")
    for role in ("prompt_model", "rationale_model", "solver", "teacher", "test_writer", "annotator"):
        fmt = getattr(cfg.prompts, role)
        if fmt.system is not None and fmt.style != "chat":
            raise ConfigError(f"{source}: key 'prompts.{role}.system': a system turn needs prompts.{role}.style=chat")
    if cfg.prompts.rationale_model.wording == "release":
        raise ConfigError(f"{source}: key 'prompts.rationale_model.wording': the release has no rationale model q_φ "
                          "(and so no wording for it); use 'ours'")
    for key in ("coldstart.epochs", "coldstart.batch_size", "data.max_length", "domain.n_items", "em.k", "em.eval_k",
                "em.iterations", "em.batch_size", "em.max_rationale_tokens", "trainer.score_tokens",
                "trainer.logits_chunk_mib",
                "solver.epochs", "synth.n_concept_sets", "synth.concepts_per_set", "synth.reference_votes",
                "synth.decontamination_ngram", "analyze.n_samples", "analyze.max_problems", "selfplay.max_problems",
                "selfplay.batch_size", "selfplay.epochs", "selfplay.eval_limit", "sft.epochs", "sft.batch_size",
                "sft.max_prompts", "sft.eval_limit", "annotate.num_concepts", "evaluate.n",
                "evaluate.max_new_tokens", "engine.shard_prompts"):
        area, name = key.split(".")
        if getattr(getattr(cfg, area), name) < 1:
            raise ConfigError(f"{source}: key '{key}': must be at least 1")


def _check_memory_budget(cfg: ExperimentConfig, source: str) -> None:
    """One budget per recipe: the engine's share of a GPU and the fits' share fit together (REVIEW C4)."""
    engine, fits = cfg.engine.gpu_memory_utilization, cfg.trainer.memory_fraction
    for key, value in (("engine.gpu_memory_utilization", engine), ("trainer.memory_fraction", fits)):
        if not 0 < value <= 1:
            raise ConfigError(f"{source}: key '{key}': a share of GPU memory, 0 < x ≤ 1; got {value}")
    if cfg.engine.backend == "vllm" and not cfg.engine.release_during_fits and engine + fits > 1:
        raise ConfigError(f"{source}: keys 'engine.gpu_memory_utilization' ({engine}) + 'trainer.memory_fraction' "
                          f"({fits}) exceed one GPU while the engine stays resident during fits "
                          "(engine.release_during_fits=false); lower one, or let the engine sleep during fits")


def _check_sampling(cfg: ExperimentConfig, source: str) -> None:
    """Every sampling setting is valid before any stage runs (not hours in, when its stage first generates)."""
    from promptcot_pl.config.common import SamplingConfig

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, SamplingConfig):
            if node.n < 1 or node.max_new_tokens < 1:
                raise ConfigError(f"{source}: key '{prefix}': n and max_new_tokens must be at least 1")
            if node.temperature < 0 or not 0 < node.top_p <= 1 or node.top_k < 0:
                raise ConfigError(f"{source}: key '{prefix}': temperature >= 0, 0 < top_p <= 1 and top_k >= 0 "
                                  f"are required, got ({node.temperature}, {node.top_p}, {node.top_k})")
        elif dataclasses.is_dataclass(node):
            for f in dataclasses.fields(node):
                walk(getattr(node, f.name), f"{prefix}.{f.name}" if prefix else f.name)

    walk(cfg, "")
    for area in ("analyze", "evaluate"):  # their sampling settings are flat fields
        node = getattr(cfg, area)
        if node.temperature < 0 or not 0 < node.top_p <= 1:
            raise ConfigError(f"{source}: key '{area}.temperature'/'{area}.top_p': temperature >= 0 and "
                              f"0 < top_p <= 1 are required, got ({node.temperature}, {node.top_p})")


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


def _check_lengths(cfg: ExperimentConfig, source: str) -> None:
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
            raise ConfigError(f"{source}: key '{key}': {new_tokens} new tokens leave no room for the prompt within "
                              f"data.max_length={length} (trained or scored sequences longer than it are dropped); "
                              f"raise data.max_length or lower {key}")
    em_length = length + 2 * cfg.em.max_rationale_tokens if "em" in cfg.stages else length
    limits = [(cfg.engine.max_model_len, "engine.max_model_len")] if cfg.engine.backend == "vllm" else []
    limits.append(_positions(cfg))
    for limit, key in limits:
        if limit is None:
            continue
        if em_length > limit:
            raise ConfigError(f"{source}: key 'data.max_length': data.max_length={length}"
                              f"{f' + 2 × em.max_rationale_tokens={cfg.em.max_rationale_tokens}' if 'em' in cfg.stages else ''}"
                              f" = {em_length} tokens exceed {key}={limit}")
        for key2, new_tokens in (("evaluate.max_new_tokens", cfg.evaluate.max_new_tokens),
                                 ("analyze.max_new_tokens", cfg.analyze.max_new_tokens),
                                 ("selfplay.eval.max_new_tokens", cfg.selfplay.eval.max_new_tokens),
                                 ("sft.eval.max_new_tokens", cfg.sft.eval.max_new_tokens)):
            if key2.split(".")[0] in cfg.stages and new_tokens >= limit:
                raise ConfigError(f"{source}: key '{key2}': {new_tokens} new tokens leave no room for a prompt "
                                  f"within {key}={limit}")


def to_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML (what is saved in the run directory)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def flatten(cfg: ExperimentConfig) -> dict[str, str]:
    """Dotted key → string value for every leaf (MLflow params)."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = str(node)

    walk(OmegaConf.to_container(OmegaConf.structured(cfg)), "")
    return out
