"""`promptcot run`: the stages of an experiment in order, each skipped once its DONE marker exists.

The run directory `<output_dir>/<name>/<run_name>/` holds the resolved `config.yaml`, one directory per stage
(outputs + `DONE` with the stage's metrics) and `tracking.json` (MLflow run ids, for reattaching on rerun).
Rerunning the same command resumes: finished stages are skipped, an interrupted fit continues from its last
checkpoint, the same MLflow parent run is reattached.

Under a multi-process launch every rank runs this same loop (see `distributed.py`): rank 0 writes the files and
the MLflow runs, the ranks meet at a barrier before each stage, and the run directory must be on a filesystem
every node sees.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from promptcot_pl import distributed
from promptcot_pl.accounting import StageMeter
from promptcot_pl.config import HOW_TO_RUN, STAGE_NAMES, ConfigError, flatten, to_yaml
from promptcot_pl.data.atomic import atomic_write_text
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.experiment import ExperimentConfig, run_dir_of, stage_input_problems
from promptcot_pl.models.checkpoints import Resolved, resolve_models
from promptcot_pl.runner.context import StageContext, log, write_json
from promptcot_pl.runner.run_lock import run_lock
from promptcot_pl.runner.stage_cache import StageCache
from promptcot_pl.tracking import Tracker

# Keys that may differ when a run directory is resumed: how to run, not what to compute (plus the settings of
# stages that have not started there yet). The stage cache uses the same list.
RESUMABLE_CHANGES = HOW_TO_RUN


def stage_fn(name: str) -> Callable[[StageContext], dict[str, float]]:
    """The one switch from stage name to its loop, `promptcot_pl/stages/<name>/loop.py` (imported lazily: stages
    pull in torch)."""
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown stage {name!r}")
    return importlib.import_module(f"promptcot_pl.stages.{name}.loop").run


def _check_same_experiment(cfg: ExperimentConfig, saved: Path) -> None:
    try:
        old = flatten(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ExperimentConfig),
                                                          OmegaConf.load(saved))))
    except OmegaConfBaseException as err:  # a key this version no longer has, or a value it cannot read
        raise ConfigError(f"{saved}: this run directory was made by another version of promptcot_pl "
                          f"({str(err).splitlines()[0]}). Pick another run_name=..., or delete {saved.parent} "
                          "to start over.") from None
    new = flatten(cfg)
    # a stage that never started in this run directory may still get new settings (add stages as you go)
    unstarted = tuple(f"{stage}." for stage in STAGE_NAMES if not (saved.parent / stage).exists())
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
               and not k.startswith(RESUMABLE_CHANGES + unstarted)]
    if changed:
        details = ", ".join(f"{k}: {old.get(k)} → {new.get(k)}" for k in changed[:5])
        raise ConfigError(f"{saved}: this run directory was made with a different config ({details}). "
                          f"Pick another run_name=..., or delete {saved.parent} to start over.")


def _save_config(cfg: ExperimentConfig, saved: Path) -> None:
    atomic_write_text(saved, to_yaml(cfg))


def _prepare_stage_dir(stage_dir: Path, clear: bool) -> None:
    (stage_dir / "DONE").unlink(missing_ok=True)
    if clear:  # a finished stage's files are hard links into the stage cache: never write through them
        shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True, exist_ok=True)


def run_pipeline(cfg: ExperimentConfig, stages: Sequence[str] | None = None, force: bool = False,
                 parent_run_id: str | None = None,
                 report: Callable[[int, Mapping[str, float]], None] | None = None,
                 cache: StageCache | None = None) -> dict[str, float]:
    """Run `stages` (default: `cfg.stages`) into the run directory; return all stages' metrics.
    A sweep nests the run's MLflow parent under its study run (`parent_run_id`), passes `report`, which stages
    call with intermediate metrics (EM: once per iteration; fits: once per epoch) so a pruner can stop the
    trial, and a `cache` of finished stages shared by trials whose settings for them are equal."""
    from promptcot_pl.models.format_check import check_formats

    try:  # a model key naming nothing loadable, or a chat format without a chat template, fails here
        resolved = distributed.broadcast(on_rank_zero(resolve_models, cfg))
        assert resolved is not None
        for key, path in resolved.changed.items():
            log.info("%s: %s", key, path)
        for note in resolved.notes + check_formats(resolved.cfg):
            log.info("note: %s", note)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _check_stage_inputs(cfg, list(stages if stages is not None else cfg.stages))
    threads = set_threads(cfg.threads)
    log.info("torch threads: %d per process (%s)", threads,
             f"threads={cfg.threads}" if cfg.threads else "from the cores and processes here; set threads=N to change")
    run_dir = run_dir_of(cfg)
    fresh = not run_dir.exists()
    try:
        # one writer per run directory (rank 0 writes for all ranks of a multi-process run)
        with run_lock(run_dir) if distributed.is_zero() else nullcontext():
            return _run_locked(cfg, resolved, run_dir, stages, force, parent_run_id, report, cache)
    except BaseException:
        if fresh and distributed.is_zero() and _nothing_made(run_dir):
            _discard_failed_start(cfg, run_dir)
        raise


def _check_stage_inputs(cfg: ExperimentConfig, todo: list[str]) -> None:
    """What the stages about to run need from outside the run, refused before any of them starts. `load_config`
    checks the same for the stages the file lists; this checks the ones that will run, which differ for a run of
    one stage (`promptcot stage NAME`)."""
    problems = stage_input_problems(cfg, todo)
    if problems:
        raise ConfigError("; ".join(problems))


def _check_same_weights(run_dir: Path, changed: dict[str, str]) -> None:
    """A resumed run reads the same converted checkpoints: their directory names carry the file's digest and
    dtype (`models/checkpoints.py`), recorded in `resolved_models.json` when the run started; the cache they live
    in may move."""
    path = run_dir / "resolved_models.json"
    now = {key: Path(target).name for key, target in changed.items()}
    if path.is_file():
        before = json.loads(path.read_text())
        differ = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
        if differ:
            details = ", ".join(f"{k}: {before.get(k)} → {now.get(k)}" for k in differ)
            raise ConfigError(f"{path}: this run started from other weights ({details}): a model file changed. "
                              f"Pick another run_name=..., or delete {run_dir} to start over.")
    elif now:
        atomic_write_text(path, json.dumps(now, indent=1) + "\n")


def set_threads(threads: int | None) -> int:
    """torch's intra-op threads: `threads`, else $OMP_NUM_THREADS when set (torchrun sets 1), else this process's
    cores ÷ the processes on this machine."""
    import torch

    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    if threads is None:
        local, _ = distributed.local_world()
        threads = max(1, len(os.sched_getaffinity(0)) // local)
    torch.set_num_threads(threads)
    return threads


# What a run directory holds before any stage has written a file.
_BOOKKEEPING = {".lock", "config.yaml", "tracking.json", "tracking_outbox.jsonl", "resolved_models.json", "run.log"}


def _nothing_made(run_dir: Path) -> bool:
    """True when no stage wrote anything here: only bookkeeping files and empty stage directories."""
    if not run_dir.is_dir():
        return False
    return all(p.name in _BOOKKEEPING if p.is_file() else p.is_dir() and not any(p.iterdir())
               for p in run_dir.iterdir())


def _discard_failed_start(cfg: ExperimentConfig, run_dir: Path) -> None:
    """A run that failed before any stage made anything leaves nothing behind: its MLflow runs are deleted (they
    hold a config and a FAILED status, no results) and the run directory it created is removed."""
    try:
        Tracker(cfg.tracking, str(cfg.name), run_dir).discard()
    except Exception as err:  # noqa: BLE001 — the run's own error is the one to report
        log.warning("could not delete the failed start's MLflow runs: %s", err)
    shutil.rmtree(run_dir, ignore_errors=True)
    log.info("nothing was made: removed %s", run_dir)


def _run_locked(spec: ExperimentConfig, resolved: Resolved, run_dir: Path, stages: Sequence[str] | None,
                force: bool, parent_run_id: str | None, report: Callable[[int, Mapping[str, float]], None] | None,
                cache: StageCache | None) -> dict[str, float]:
    """The run directory keeps the experiment as written (`spec`: a `pkg:` or .gguf model key stays one, so the
    saved config runs on another machine); stages and the stage cache get `resolved.cfg`, whose model keys name
    the converted checkpoints (keyed by the file's digest), and MLflow records both."""
    saved = run_dir / "config.yaml"
    if saved.is_file():
        _check_same_experiment(spec, saved)
    on_rank_zero(_save_config, spec, saved)
    on_rank_zero(_check_same_weights, run_dir, resolved.changed)
    cfg = resolved.cfg

    tracker = Tracker(cfg.tracking, str(cfg.name), run_dir)
    todo = list(stages if stages is not None else cfg.stages)
    with _run_log(run_dir):
        return _run_stages(cfg, spec, resolved, run_dir, saved, tracker, todo, force, parent_run_id, report, cache)


def _run_stages(cfg: ExperimentConfig, spec: ExperimentConfig, resolved: Resolved, run_dir: Path, saved: Path,
                tracker: Tracker, todo: list[str], force: bool, parent_run_id: str | None,
                report: Callable[[int, Mapping[str, float]], None] | None,
                cache: StageCache | None) -> dict[str, float]:
    results: dict[str, float] = {}
    with tracker.run("parent", f"{cfg.name}/{cfg.run_name}", parent=parent_run_id) as parent:
        tracker.log_params(parent, flatten(spec) | {f"resolved.{k}": v for k, v in resolved.changed.items()})
        tracker.log_artifact(parent, saved)
        log.info("run directory: %s", run_dir.resolve())
        if parent:
            log.info("MLflow run id: %s (store %s; open it with `promptcot ui`)", parent, tracker.uri)
        ran = 0
        for name in todo:
            distributed.barrier()  # every rank decides on the same files
            stage_dir = run_dir / name
            done = stage_dir / "DONE"
            if done.is_file() and not force:
                log.info("stage %s: already done, skipping (%s)", name, done)
                results.update(json.loads(done.read_text() or "{}"))
                continue
            if cache is not None and not force and (
                    entry := distributed.broadcast(on_rank_zero(cache.restore, cfg, name, stage_dir))) is not None:
                metrics = json.loads(done.read_text() or "{}")
                log.info("stage %s: reused %s (same settings)", name, entry)
                with tracker.run(name, name, parent=parent) as stage_run:
                    tracker.log_metrics(stage_run, metrics)
                tracker.log_metrics(parent, metrics)
                results.update(metrics)
                continue
            on_rank_zero(_prepare_stage_dir, stage_dir, clear=force and cache is not None)
            log.info("stage %s: starting", name)
            with tracker.run(name, name, parent=parent) as stage_run:
                ctx = StageContext(cfg=cfg, run_dir=run_dir, stage_dir=stage_dir, tracker=tracker, run_id=stage_run,
                                   report=report)
                meter = StageMeter(name)
                with _naming_the_path(stage_dir):
                    metrics = stage_fn(name)(ctx)
                cost = meter.finish(metrics)
                tracker.log_metrics(stage_run, {k: v for k, v in metrics.items() if k not in ctx.curves} | cost)
                tracker.log_metrics(parent, metrics | cost)
            write_json(stage_dir / "accounting.json", cost)
            log.info("stage %s: %s", name, _cost_line(cost))
            write_json(done, metrics)
            if cache is not None:
                on_rank_zero(cache.publish, cfg, name, stage_dir)
            results.update(metrics)
            ran += 1
        if ran == 0:
            log.info("nothing to do: every stage of %s has finished (no training was run)", run_dir)
    # the console reads as a report, stage by stage; the numbers themselves are in DONE files and MLflow
    costs = [json.loads(path.read_text()) for name in todo if (path := run_dir / name / "accounting.json").is_file()]
    wall = sum(v for cost in costs for k, v in cost.items() if k.endswith("/wall_s"))
    log.info("done: %d metrics of %d stages (%.0f s of stage time) in %s/<stage>/DONE and MLflow; tabulate them with "
             "`promptcot report %s`", len(results), len(todo), wall, run_dir, run_dir)
    return results


class _RunLogHandler(logging.FileHandler):
    """run.log is a copy of what the run says: a line it cannot write (a full disk) is dropped without the
    logging module's traceback, so the run's own error is the one reported
    (tests/test_tracking_server.py::test_a_full_disk_is_named_and_nothing_half_written_counts_as_done)."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@contextmanager
def _run_log(run_dir: Path) -> Iterator[None]:
    """Every line of the package's loggers, details (DEBUG) included, and a failure's traceback, appended to
    `<run_dir>/run.log` with its time (rank 0)."""
    if not distributed.is_zero():
        yield
        return
    handler = _RunLogHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in ("promptcot", "promptcot_pl")]  # ours by name and by module
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)  # a console handler keeps its own level (cli.py: INFO)
    try:
        yield
    except BaseException:
        log.debug("the run stopped here", exc_info=True)
        raise
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
        try:
            handler.close()
        except OSError:  # its last flush on a full disk: the run's own error is the one to report
            pass


@contextmanager
def _naming_the_path(stage_dir: Path) -> Iterator[None]:
    """A write that failed for want of space or rights names a path: the file's when the system gave one, else
    the stage directory (a write() on a full disk, or a library's own error such as safetensors' "No space left on
    device", carries no file name)."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(stage_dir)) from err
        raise
    except Exception as err:
        if "No space left on device" in str(err):
            raise OSError(errno.ENOSPC, "No space left on device", str(stage_dir)) from err
        raise


def _cost_line(cost: dict[str, float]) -> str:
    short = {k.rsplit("/", 1)[-1]: v for k, v in cost.items()}
    parts = [f"{short['wall_s']:.1f} s"]
    for kind in ("generated", "trained"):
        if short[f"{kind}_tokens"]:
            parts.append(f"{kind} {short[f'{kind}_tokens']:.0f} tokens ({short[f'{kind}_tokens_per_s']:.0f}/s)")
    parts.append(f"peak RSS {short['peak_rss_gb']:.2f} GB")
    if "peak_gpu_gb" in short:
        parts.append(f"peak GPU {short['peak_gpu_gb']:.2f} GB")
    if "s_per_1000_accepted" in short:
        parts.append(f"{short['s_per_1000_accepted']:.0f} s per 1,000 accepted problems")
    return ", ".join(parts)
