"""Sweep files (`sweeps/*.yaml`): a base experiment, fixed overrides, a search space over dotted experiment keys,
objective metric(s) and direction(s), sampler, pruner, budget and storage.

Typed like experiment files (OmegaConf structured dataclasses): a misspelt sweep key is an error naming the file
and the closest key, and every search-space key is checked against the experiment's schema before any trial runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from promptcot_pl.config import ConfigError, check_keys, read_yaml
from promptcot_pl.experiment import load_config


@dataclass
class ParamSpec:
    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    # a conditional parameter: sampled only when these earlier parameters took these values (Optuna's
    # define-by-run spaces), e.g. label smoothing only for the sigmoid loss
    when: dict[str, Any] | None = None

    def active(self, params: dict[str, Any]) -> bool:
        return not self.when or all(params.get(k) == v for k, v in self.when.items())

    @property
    def range(self) -> tuple[float, float]:
        """(low, high) of a numeric parameter (both are checked at load)."""
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
        return self.low, self.high

    @property
    def options(self) -> list[Any]:
        """The choices of a categorical parameter (checked at load)."""
        if not self.choices:
            raise ValueError("a categorical parameter needs 'choices'")
        return list(self.choices)


@dataclass
class ObjectiveSpec:
    metric: str = "em/iwae_heldout"
    direction: str = "maximize"  # or "minimize" (checked in load_sweep, so the error names the list index)


@dataclass
class SamplerSpec:
    name: Literal["tpe", "random"] = "tpe"
    seed: int = 0


@dataclass
class PrunerSpec:
    name: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = 2  # median: trials that are never pruned
    n_warmup_steps: int = 0  # median: steps (EM iterations) before pruning starts
    min_resource: int = 1  # hyperband
    max_resource: int | None = None  # hyperband (None: the largest step reported)


@dataclass
class SweepConfig:
    experiment: str = "???"  # the base experiment file, relative to the sweep file
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed dotted-key overrides for every trial
    search_space: dict[str, ParamSpec] = field(default_factory=dict)
    objectives: list[ObjectiveSpec] = field(default_factory=lambda: [ObjectiveSpec()])
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    # parameter sets to try first, in order (known-good settings, a baseline); each is enqueued once per study
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    n_trials: int = 10  # per worker process
    timeout: float | None = None  # seconds, per worker process
    study_name: str | None = None  # None: the sweep file's stem
    # None: sqlite beside the MLflow store (mlflow/optuna.db); any SQLAlchemy URL (postgresql://…) for several
    # machines, or an Optuna journal file (`journal:path` or a path ending in .log)
    storage: str | None = None
    heartbeat_interval: int = 20  # seconds; a trial whose worker stopped beating is failed and retried
    grace_period: int | None = None  # seconds without a heartbeat before that (None: 2 × interval)
    max_retry: int = 2
    output_dir: str = "runs"  # trial run directories: <output_dir>/<study>/trial_NNNN
    # trials whose settings for a stage are equal share it (<output_dir>/<study>/stage_cache, runner/stage_cache.py)
    share_stages: bool = True

    @property
    def name(self) -> str:
        """The study's name: `study_name`, which `load_sweep` sets to the file's stem when the file does not."""
        if self.study_name is None:
            raise ValueError("the sweep has no study_name (load it with load_sweep)")
        return self.study_name

    @property
    def root(self) -> Path:
        """The study's directory: its trials' run directories, the shared stage cache, the plots."""
        return Path(self.output_dir) / self.name

    def trial_overrides(self, params: dict[str, Any]) -> list[str]:
        """Dotlist overrides for one trial: the fixed ones, then the sampled ones (JSON is valid YAML)."""
        return [f"{k}={json.dumps(v)}" for k, v in {**self.overrides, **params}.items()]


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[SweepConfig, Path]:
    """(sweep config, resolved base experiment path); checks keys, the search space and the objectives."""
    path = Path(path)
    layer = read_yaml(path)
    check_keys(OmegaConf.to_container(layer), SweepConfig, prefix="", source=str(path))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SweepConfig), layer, OmegaConf.create(overrides or {}))
        sweep: SweepConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"{path}: key '{key}': {str(err).splitlines()[0]}") from None
    sweep.study_name = sweep.study_name or path.stem
    experiment = (path.parent / sweep.experiment).resolve()
    if not experiment.is_file():
        raise ConfigError(f"{path}: key 'experiment': no such experiment file {experiment}")
    for i, (key, spec) in enumerate(sweep.search_space.items()):
        _check_spec(path, key, spec)
        earlier = list(sweep.search_space)[:i]
        for cond in spec.when or {}:
            if cond not in earlier:
                raise ConfigError(f"{path}: key 'search_space.{key}.when.{cond}': not a parameter listed before "
                                  f"{key!r}")
    for i, params in enumerate(sweep.enqueue):
        unknown = [k for k in params if k not in sweep.search_space]
        if unknown:
            raise ConfigError(f"{path}: key 'enqueue[{i}].{unknown[0]}': not a key of search_space")
    if not sweep.objectives:
        raise ConfigError(f"{path}: key 'objectives': at least one objective is needed")
    for i, objective in enumerate(sweep.objectives):
        if objective.direction not in ("maximize", "minimize"):
            raise ConfigError(f"{path}: key 'objectives[{i}].direction': expected 'maximize' or 'minimize', "
                              f"got {objective.direction!r}")
    # every key must exist in the experiment schema: try the fixed overrides plus one value of each parameter
    sample: dict[str, Any] = {}
    for key, spec in sweep.search_space.items():
        if spec.active(sample):
            sample[key] = (spec.options[0] if spec.type == "categorical" else
                           int(spec.range[0]) if spec.type == "int" else spec.range[0])
    try:
        load_config(experiment, sweep.trial_overrides(sample))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return sweep, experiment


def _check_spec(path: Path, key: str, spec: ParamSpec) -> None:
    where = f"{path}: key 'search_space.{key}'"
    if spec.type == "categorical":
        if not spec.choices:
            raise ConfigError(f"{where}: a categorical parameter needs 'choices'")
        return
    if spec.low is None or spec.high is None or not spec.low < spec.high:
        raise ConfigError(f"{where}: needs 'low' < 'high'")
    if spec.log and spec.low <= 0:
        raise ConfigError(f"{where}: a log-scale range needs low > 0")
    if spec.log and spec.step is not None:
        raise ConfigError(f"{where}: 'step' and 'log' cannot be combined (Optuna)")
