"""MLflow tracking: one parent run per `promptcot run`, one nested run per stage, and one per fit inside it.

Run ids are kept in the run directory (`tracking.json`), so rerunning the same command reattaches to the same
runs instead of starting new ones. Metrics go out in batches (`log_batch`: one sqlite write per call, not per
value). Fits log through Lightning's `MLFlowLogger` bound to their nested run.
The default store is `sqlite:///mlflow/mlflow.db` with artifacts in `mlflow/artifacts` (relative to the working
directory); `MLFLOW_TRACKING_URI` in the environment wins over the config.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from promptcot_pl.config.schema import TrackingConfig


def tracking_uri(cfg: TrackingConfig) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.uri
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
    return uri


class Tracker:
    """MLflow runs of one run directory. With tracking disabled every method is a no-op — as it is on every rank
    but 0 of a multi-process run, so each run, metric and artifact is logged once."""

    def __init__(self, cfg: TrackingConfig, experiment: str, run_dir: Path) -> None:
        from promptcot_pl.distributed import is_zero

        self.enabled = cfg.enabled and is_zero()
        self.cfg = cfg
        self.experiment = cfg.experiment or experiment
        self.state_path = run_dir / "tracking.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.client = None
        if self.enabled:
            from mlflow.tracking import MlflowClient

            self.uri = tracking_uri(cfg)
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._experiment_id()

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        local = self.uri.startswith(("sqlite:", "file:")) or "://" not in self.uri
        # A server decides where artifacts go; a local store must not default to ./mlruns.
        location = Path(self.cfg.artifact_location).resolve().as_uri() if local else None
        return self.client.create_experiment(self.experiment, artifact_location=location)

    def _save_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        os.replace(tmp, self.state_path)

    def run_id(self, key: str, name: str, parent: str | None) -> str | None:
        """The run stored under `key`, reattached (status RUNNING); created as a child of `parent` if new."""
        if not self.enabled:
            return None
        runs = self.state.setdefault("runs", {})
        if key in runs:
            self.client.update_run(runs[key], status="RUNNING")
            return runs[key]
        tags = {"mlflow.runName": name}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        runs[key] = run.info.run_id
        self._save_state()
        return run.info.run_id

    @contextmanager
    def run(self, key: str, name: str, parent: str | None = None) -> Iterator[str | None]:
        """A run that ends FINISHED, or FAILED/KILLED when the block raises."""
        run_id = self.run_id(key, name, parent)
        status = "FAILED"
        try:
            yield run_id
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            if run_id is not None:
                self.client.set_terminated(run_id, status=status)

    def log_params(self, run_id: str | None, params: Mapping[str, str]) -> None:
        if run_id is None:
            return
        from mlflow.entities import Param

        done = {k: v for k, v in self.client.get_run(run_id).data.params.items()}
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in done]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(run_id, params=items[start:start + 100])

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int = 0) -> None:
        if run_id is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_artifact(self, run_id: str | None, path: str | Path, folder: str | None = None) -> None:
        if run_id is not None:
            self.client.log_artifact(run_id, str(path), folder)

    def lightning_logger(self, run_id: str | None):
        """A Lightning `MLFlowLogger` writing into `run_id` (None when tracking is off)."""
        if run_id is None:
            return None
        from lightning.pytorch.loggers import MLFlowLogger

        return MLFlowLogger(tracking_uri=self.uri, run_id=run_id, experiment_name=self.experiment)
