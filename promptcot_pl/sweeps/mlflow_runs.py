"""MLflow runs of an Optuna study: one parent run per study (found by its tag, so every worker logs under the same
one), one nested run per trial (the pipeline's own parent run: all config params, the sampled ones among them, its
stage runs below), tagged with the trial number, final state and best-trial flag, with `trial/objective` and
`trial/duration_s`; the study run gets `study/best_value` and Optuna's plots (matplotlib backend).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import optuna

from promptcot_pl.config import TrackingConfig
from promptcot_pl.sweeps.config import SweepConfig

log = logging.getLogger("promptcot")


def study_run_id(sweep: SweepConfig, tracking: TrackingConfig) -> str | None:
    """The study's MLflow parent run, shared by every worker: found by tag, created by the first worker. Two
    workers that create it at once both keep the oldest one and delete their own."""
    if not tracking.enabled:
        return None
    from promptcot_pl.tracking import Tracker

    tracker = Tracker(tracking, tracking.experiment or sweep.name, Path(sweep.output_dir))
    if tracker.experiment_id is None:  # the server does not answer (the tracker said so); trials log through outboxes
        log.warning("sweep %s: no study run while the tracking server is away; trials are not grouped under one",
                    sweep.name)
        return None
    experiment_id = tracker.experiment_id
    tag = f"tags.`promptcot.study` = '{sweep.name}'"

    def oldest():
        runs = tracker.mlflow.search_runs([experiment_id], tag, order_by=["attribute.start_time ASC"])
        return runs[0].info.run_id if runs else None

    found = oldest()
    if found:
        return found
    mine = tracker.mlflow.create_run(experiment_id, run_name=f"study/{sweep.name}",
                                     tags={"promptcot.study": sweep.name}).info.run_id
    winner = oldest()
    if winner != mine:
        tracker.mlflow.delete_run(mine)
    return winner


def tag_trial_runs(study: optuna.Study, tracking: TrackingConfig) -> None:
    """State, objective and duration on each finished trial's MLflow run (found through its run directory)."""
    if not tracking.enabled:
        return
    from mlflow.tracking import MlflowClient

    from promptcot_pl.tracking import tracking_uri

    client = MlflowClient(tracking_uri(tracking))
    best = {t.number for t in study.best_trials} if _has_complete(study) else set()
    for trial in study.get_trials(deepcopy=False):
        state_file = Path(trial.user_attrs.get("run_dir", "")) / "tracking.json"
        if not state_file.is_file() or trial.state == optuna.trial.TrialState.RUNNING:
            continue
        run_id = json.loads(state_file.read_text())["runs"].get("parent")
        if run_id is None:
            continue
        client.set_tag(run_id, "optuna.trial_number", str(trial.number))
        client.set_tag(run_id, "optuna.state", trial.state.name)
        client.set_tag(run_id, "optuna.best_trial", str(trial.number in best).lower())
        if trial.values:
            client.log_metric(run_id, "trial/objective", float(trial.values[0]))
        if trial.duration is not None:
            client.log_metric(run_id, "trial/duration_s", trial.duration.total_seconds())


def _has_complete(study: optuna.Study) -> bool:
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def log_plots(study: optuna.Study, study_run: str | None, tracking: TrackingConfig, out_dir: Path) -> None:
    if study_run is None or not _has_complete(study):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow.tracking import MlflowClient
    from optuna.visualization import matplotlib as ovm

    from promptcot_pl.tracking import tracking_uri

    client = MlflowClient(tracking_uri(tracking))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = None if len(study.directions) == 1 else (lambda t: t.values[0])
    plots = {"history": lambda: ovm.plot_optimization_history(study, target=target),
             "param_importances": lambda: ovm.plot_param_importances(study, target=target),
             "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, target=target)}
    for name, plot in plots.items():
        try:
            ax: Any = plot()  # one Axes, or an array of them
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # e.g. importances need 2+ finished trials
            log.info("sweep: no %s plot (%s)", name, err)
            continue
        figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        client.log_artifact(study_run, str(path))
    if len(study.directions) == 1:
        client.log_metric(study_run, "study/best_value", float(study.best_value))
        client.set_tag(study_run, "optuna.best_trial", str(study.best_trial.number))
