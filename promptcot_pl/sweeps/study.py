"""`promptcot sweep`: an Optuna study whose trials run the pipeline recipe with sampled overrides.

Optuna does the search (TPE or random sampler, median / Hyperband pruner, single- or multi-objective), the
storage (SQLite by default, any RDB URL such as PostgreSQL, or a journal file) and the recovery of dead workers:
every trial beats a heartbeat, and a trial whose worker stopped beating is marked FAIL by the next worker and
retried with the same parameters (`RetryHeartbeatStaleTrialCallback`).
Fresh SQLite stores (MLflow's and Optuna's) are created under a file lock: two workers starting at once would
otherwise both run the schema migrations. A retry reuses the failed trial's run directory
`<output_dir>/<study>/trial_NNNN`, so finished stages are skipped and an interrupted fit resumes. Stages whose
settings do not vary between trials (the seed set and cold start of an EM sweep) run once and are shared
(`runner/stage_cache.py`; `share_stages: false` turns that off).
Several workers = the same command in several processes or machines on one storage (`load_if_exists`). Under
`torchrun` one worker spans all its processes: rank 0 runs the study, every rank runs each trial (`_follow`).

MLflow runs of a study: `sweeps/mlflow_runs.py`.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from promptcot_pl import distributed
from promptcot_pl.experiment import load_config
from promptcot_pl.sweeps.config import ParamSpec, SweepConfig
from promptcot_pl.sweeps.mlflow_runs import log_plots, study_run_id, tag_trial_runs

log = logging.getLogger("promptcot")
DEFAULT_STORAGE = "sqlite:///mlflow/optuna.db"


def storage(sweep: SweepConfig, url: str | None = None):
    url = url or sweep.storage or DEFAULT_STORAGE
    if url.startswith("journal:") or url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(
        url, heartbeat_interval=sweep.heartbeat_interval, grace_period=sweep.grace_period,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=sweep.max_retry),
        engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {})


def _sampler(sweep: SweepConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    """Worker k of a study samples with seed + k: reproducible for one worker, and concurrent workers do not
    propose the same parameters (with one seed their random start-up trials would be identical)."""
    seed = sweep.sampler.seed + worker
    if sweep.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(sweep: SweepConfig) -> optuna.pruners.BasePruner:
    match sweep.pruner.name:
        case "median":
            return optuna.pruners.MedianPruner(n_startup_trials=sweep.pruner.n_startup_trials,
                                               n_warmup_steps=sweep.pruner.n_warmup_steps)
        case "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=sweep.pruner.min_resource,
                                                  max_resource=sweep.pruner.max_resource or "auto")
    return optuna.pruners.NopPruner()


def open_study(sweep: SweepConfig, url: str | None = None) -> optuna.Study:
    directions: list[Any] = [o.direction for o in sweep.objectives]  # "maximize" / "minimize", checked at load
    return optuna.create_study(study_name=sweep.name, storage=storage(sweep, url), sampler=_sampler(sweep),
                               pruner=_pruner(sweep), directions=directions, load_if_exists=True)


def suggest(trial: optuna.Trial, key: str, spec: ParamSpec) -> Any:
    match spec.type:
        case "categorical":
            return trial.suggest_categorical(key, spec.options)
        case "int":
            low, high = spec.range
            return trial.suggest_int(key, int(low), int(high), step=int(spec.step or 1), log=spec.log)
    return trial.suggest_float(key, *spec.range, step=spec.step, log=spec.log)


def sample_params(trial: optuna.Trial, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """One value per parameter, in file order, so a conditional parameter (`when`) sees its conditions."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.active(params):
            params[key] = suggest(trial, key, spec)
    return params


class _Reporter:
    """Passes the objective's intermediate values to Optuna — once per EM iteration (`stages/em/loop.py`), or once per
    epoch of the fit whose held-out NLL is the objective (`runner/pruning.py`) — and stops the trial when the
    pruner says so.

    In a multi-process trial every rank calls it at the same points (every rank runs the same stage code): rank 0
    holds the trial and asks the pruner, its decision is broadcast, and every rank raises `TrialPruned` together —
    a rank that stopped alone would leave the others waiting in their next collective."""

    def __init__(self, trial: optuna.Trial | None, metric: str | None) -> None:
        self.trial, self.metric = trial, metric  # trial None: a follower rank

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.metric is None or self.metric not in metrics:
            return
        prune = False
        if self.trial is not None:
            self.trial.report(float(metrics[self.metric]), step)
            prune = self.trial.should_prune()
        if distributed.world_size() > 1:
            prune = distributed.broadcast(prune)
        if prune:
            raise optuna.TrialPruned(f"pruned at step {step}: {self.metric} = {metrics[self.metric]:.4f}")


def _objective(sweep: SweepConfig, experiment: Path, study_run: str | None):
    from promptcot_pl.pipeline import run_dir_of

    single = sweep.objectives[0].metric if len(sweep.objectives) == 1 else None  # Optuna prunes single objectives

    def objective(trial: optuna.Trial) -> float | list[float]:
        params = sample_params(trial, sweep.search_space)
        # a retried trial continues in the directory of the trial it retries
        running = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        number = RetryHeartbeatStaleTrialCallback.retried_trial_number(next(t for t in running if t.number == trial.number))
        number = trial.number if number is None else number
        overrides = sweep.trial_overrides(params) + [
            f"name={sweep.name}", f"run_name=trial_{number:04d}", f"output_dir={sweep.output_dir}"]
        cfg = load_config(experiment, overrides)
        trial.set_user_attr("run_dir", str(run_dir_of(cfg)))
        log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in params.items()))
        if distributed.world_size() > 1:
            distributed.broadcast(overrides)  # the other ranks run the same trial (`_follow`)
        metrics = _run_trial(sweep, cfg, study_run, _Reporter(trial, single))
        missing = [o.metric for o in sweep.objectives if o.metric not in metrics]
        if missing:
            raise KeyError(f"objective metric {missing[0]!r} was not produced by stages {cfg.stages}; "
                           f"metrics: {sorted(metrics)[:12]}")
        values = [float(metrics[o.metric]) for o in sweep.objectives]
        return values[0] if len(values) == 1 else values

    return objective


def _run_trial(sweep: SweepConfig, cfg, study_run: str | None, reporter: _Reporter) -> dict[str, float]:
    from promptcot_pl.pipeline import run_pipeline
    from promptcot_pl.runner.stage_cache import StageCache

    cache = StageCache(sweep.root / "stage_cache") if sweep.share_stages else None
    return run_pipeline(cfg, parent_run_id=study_run, report=reporter, cache=cache)


def _follow(sweep: SweepConfig, experiment: Path, study_run: str | None) -> None:
    """A rank other than 0 of a multi-process sweep: run every trial rank 0 starts (its overrides, broadcast), until
    rank 0 broadcasts None. Pruned and failed trials end here as on rank 0, where Optuna records them."""
    single = sweep.objectives[0].metric if len(sweep.objectives) == 1 else None
    while (overrides := distributed.broadcast(None)) is not None:
        try:
            _run_trial(sweep, load_config(experiment, overrides), study_run, _Reporter(None, single))
        except optuna.TrialPruned:
            continue
        except Exception as err:  # noqa: BLE001 — rank 0's Optuna records the trial as failed; go on as it does
            log.warning("rank %d: trial failed: %s", distributed.rank(), err)


@contextmanager
def _store_lock(path: Path = Path("mlflow/.promptcot-init.lock")) -> Iterator[None]:
    """One worker at a time creates or opens the local stores (a local file lock; servers need none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_sweep(sweep: SweepConfig, experiment: Path, n_trials: int | None = None,
              url: str | None = None) -> optuna.Study | None:
    """Run trials until the budget is spent. Under torchrun every trial runs on all ranks (DDP/FSDP fits, sharded
    generation): rank 0 alone talks to the study and broadcasts each trial's overrides to the others."""
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    tracking = load_config(experiment, sweep.trial_overrides({})).tracking
    study, study_run = None, None
    if distributed.is_zero():
        with _store_lock():
            study = open_study(sweep, url)
            worker = int(study.user_attrs.get("workers_started", 0))
            study.set_user_attr("workers_started", worker + 1)
            study.sampler = _sampler(sweep, worker)
            for params in sweep.enqueue:
                study.enqueue_trial(dict(params), skip_if_exists=True)
            study_run = study_run_id(sweep, tracking)
        log.info("sweep %s: storage %s; MLflow study run %s", sweep.name, url or sweep.storage or DEFAULT_STORAGE,
                 study_run)
    study_run = distributed.broadcast(study_run)
    if not distributed.is_zero():
        _follow(sweep, experiment, study_run)
        return study  # None: rank 0 holds the study
    assert study is not None  # rank 0 opened it above
    start = time.time()
    try:
        study.optimize(_objective(sweep, experiment, study_run), n_trials=n_trials or sweep.n_trials,
                       timeout=sweep.timeout, catch=(Exception,), gc_after_trial=True)
    finally:
        if distributed.world_size() > 1:
            distributed.broadcast(None)  # no more trials: the other ranks return
    tag_trial_runs(study, tracking)
    log_plots(study, study_run, tracking, sweep.root / "plots")
    log.info("sweep %s: this worker finished after %.0f s", sweep.name, time.time() - start)
    return study


def report(study: optuna.Study, top: int = 10) -> str:
    """The best trials (then the rest by state) as a markdown table."""
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    finished.sort(key=lambda t: -sign * t.values[0])
    others = [t for t in trials if t.state != optuna.trial.TrialState.COMPLETE]
    keys = sorted({k for t in trials for k in t.params})
    lines = ["| trial | state | value(s) | " + " | ".join(keys) + " | duration |",
             "|---|---|---|" + "---|" * len(keys) + "---|"]
    for t in finished[:top] + others:
        values = ", ".join(f"{v:.4f}" for v in t.values) if t.values else "–"
        params = " | ".join(_fmt(t.params.get(k)) for k in keys)
        duration = f"{t.duration.total_seconds():.0f} s" if t.duration else "–"
        lines.append(f"| {t.number} | {t.state.name} | {values} | {params} | {duration} |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
