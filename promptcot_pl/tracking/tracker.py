"""MLflow tracking: one parent run per `promptcot run`, one nested run per stage, and one per fit inside it.

Run ids are kept in the run directory (`tracking.json`), so rerunning the same command reattaches to the same
runs instead of starting new ones. A reattached run keeps one point per (metric, step): what a killed process
already logged (a fit's steps between its last checkpoint and the kill, a stage's final metrics written just
before its DONE) is not logged twice when the rerun computes it again (`Tracker.fresh`). Metrics go out in
batches (`log_batch`: one write per call, not per value). Fits log through `TrackerLogger`, a Lightning logger
that writes through this tracker.

A tracking server (http[s]://) that goes away does not stop the run: every call it refuses is kept, in order, in
`<run_dir>/tracking_outbox.jsonl` (runs to create included, under a "pending:<key>" handle), retried at most
every `RETRY_S` seconds while the run goes on, and flushed when the parent run ends (waiting up to `FLUSH_S`);
what is still undelivered then stays in the outbox for the next invocation of the same command.
`tracking.strict=true` stops the run before any work instead, naming the server. Local stores (sqlite, files)
are not buffered: an error there is a bug to see, not an outage.
The default store is `sqlite:///mlflow/mlflow.db` with artifacts in `mlflow/artifacts` (relative to the working
directory); `MLFLOW_TRACKING_URI` in the environment wins over the config.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptcot_pl.config import TrackingConfig

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
from promptcot_pl.data.atomic import atomic_write_text

log = logging.getLogger("promptcot")
# Ours trains models: the experiment kind MLflow records for that. (MLflow 3.17's UI takes its navigation from the
# URL's `workflowType` instead — `promptcot ui` prints that URL —; the kind is what other MLflow clients read.)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
RETRY_S = 5.0  # how often a run retries an unreachable server
FLUSH_S = 60.0  # how long the end of a run waits for it


def tracking_uri(cfg: TrackingConfig) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.uri
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
    return uri


class TrackingUnavailable(RuntimeError):
    """`tracking.strict=true` and the tracking server does not answer."""


class Tracker:
    """MLflow runs of one run directory. With tracking disabled every method is a no-op — as it is on every rank
    but 0 of a multi-process run, so each run, metric and artifact is logged once."""

    def __init__(self, cfg: TrackingConfig, experiment: str, run_dir: Path) -> None:
        from promptcot_pl.distributed import is_zero

        self.enabled = cfg.enabled and is_zero()
        self.cfg = cfg
        self.experiment = cfg.experiment or experiment
        self.state_path = run_dir / "tracking.json"
        self.outbox_path = run_dir / "tracking_outbox.jsonl"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.client: MlflowClient | None = None  # only on a tracking process (rank 0, tracking.enabled)
        self.experiment_id: str | None = None
        self._reattached: set[str] = set()
        self._logged: dict[str, set[tuple[str, int]]] = {}  # run id → (metric, step) points it holds
        self._outbox: list[dict[str, Any]] = []
        self._last_try = 0.0
        if not self.enabled:
            return
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(cfg)
        self.remote = self.uri.startswith(("http://", "https://"))
        if self.remote:  # an outage costs seconds, not MLflow's default minutes of retries per call
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self.client = MlflowClient(tracking_uri=self.uri)
        if self.outbox_path.is_file():  # a previous invocation ended before the server took these
            self._outbox = [json.loads(line) for line in self.outbox_path.read_text().splitlines() if line.strip()]
        try:
            self.experiment_id = self._experiment_id()
        except Exception as err:  # noqa: BLE001 — any failure of a remote store is an outage to survive
            if not self.remote:
                raise
            if cfg.strict:
                raise TrackingUnavailable(
                    f"tracking server {self.uri} does not answer ({type(err).__name__}: {str(err)[:200]}); "
                    "tracking.strict=true stops the run before any work. Start the server, or set "
                    "tracking.strict=false to run on and send the metrics when it is back.") from None
            log.warning("tracking server %s does not answer: the run goes on and keeps its MLflow records in %s "
                        "until it does", self.uri, self.outbox_path)
        self.flush()

    @property
    def mlflow(self) -> MlflowClient:
        """The MLflow client of a tracking process (every call on it is made where `enabled` holds)."""
        if self.client is None:
            raise RuntimeError("this tracker does not track (tracking.enabled is false or this is not rank 0)")
        return self.client

    # --- delivery -------------------------------------------------------------------------------------------

    def _experiment_id(self) -> str:
        found = self.mlflow.get_experiment_by_name(self.experiment)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND[0]) is None:  # made before the kind was set, or by another tool
                self.mlflow.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
            return found.experiment_id
        local = self.uri.startswith(("sqlite:", "file:")) or "://" not in self.uri
        # A server decides where artifacts go; a local store must not default to ./mlruns.
        location = Path(self.cfg.artifact_location).resolve().as_uri() if local else None
        return self.mlflow.create_experiment(self.experiment, artifact_location=location,
                                             tags=dict([EXPERIMENT_KIND]))

    def _resolve(self, handle: str | None) -> str | None:
        if handle is not None and handle.startswith("pending:"):
            return self.state.get("runs", {}).get(handle.removeprefix("pending:"))
        return handle

    def _execute(self, op: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        if self.experiment_id is None:
            self.experiment_id = self._experiment_id()
        kind = op["op"]
        if kind == "create":
            tags = {"mlflow.runName": op["name"]}
            if op["parent"] is not None:
                tags["mlflow.parentRunId"] = self._resolve(op["parent"])
            run = self.mlflow.create_run(self.experiment_id, tags=tags, run_name=op["name"])
            self.state.setdefault("runs", {})[op["key"]] = run.info.run_id
            self._save_state()
            return
        run_id = self._resolve(op["run"])
        if run_id is None:
            raise RuntimeError(f"tracking: {kind} for a run that was never created ({op['run']!r})")
        if kind == "metrics":
            items = [Metric(k, v, t, s) for k, v, t, s in op["points"]]
            for start in range(0, len(items), 1000):  # MLflow takes at most 1000 metrics per batch
                self.mlflow.log_batch(run_id, metrics=items[start:start + 1000])
        elif kind == "params":
            held = self.mlflow.get_run(run_id).data.params
            params = [Param(k, v) for k, v in op["params"].items() if k not in held]
            for start in range(0, len(params), 100):  # and at most 100 params
                self.mlflow.log_batch(run_id, params=params[start:start + 100])
        elif kind == "status":
            self.mlflow.update_run(run_id, status=op["status"])
        elif kind == "terminated":
            self.mlflow.set_terminated(run_id, status=op["status"])
        elif kind == "dataset":
            # registered when mlflow.data loads (mypy cannot see it)
            from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]
            from mlflow.entities import Dataset, DatasetInput, InputTag

            source = LocalArtifactDatasetSource(op["source"])
            dataset = Dataset(name=op["name"], digest=op["digest"], source_type="local",
                              source=source.to_json(), profile=json.dumps({"num_rows": op["rows"]}))
            self.mlflow.log_inputs(run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context",
                                                                                     "training")])])
        elif kind == "artifact":
            self.mlflow.log_artifact(run_id, op["path"], op["folder"])
        elif kind == "model":
            if op["key"] in self.state.get("models", {}):
                return
            model = self.mlflow.create_logged_model(self.experiment_id, name=op["name"], source_run_id=run_id,
                                                    params=op["params"], model_type="transformers causal LM")
            self.mlflow.finalize_logged_model(model.model_id, "READY")
            self.state.setdefault("models", {})[op["key"]] = model.model_id
            self._save_state()

    def _send(self, op: dict[str, Any]) -> None:
        """Execute `op` now, or keep it (in order, on disk) while a remote server does not answer."""
        if self._outbox:
            self._queue(op)
            if time.monotonic() - self._last_try >= RETRY_S:
                self.flush()
            return
        try:
            self._execute(op)
        except Exception as err:  # noqa: BLE001
            if not self.remote:
                raise
            log.warning("tracking server %s stopped answering (%s): MLflow records are kept in %s and sent when "
                        "it is back", self.uri, type(err).__name__, self.outbox_path)
            self._last_try = time.monotonic()
            self._queue(op)

    def _queue(self, op: dict[str, Any]) -> None:
        self._outbox.append(op)
        with open(self.outbox_path, "a") as handle:  # a killed run's records survive it
            handle.write(json.dumps(op) + "\n")

    def flush(self, wait_s: float = 0.0) -> bool:
        """Send what the outbox holds, in order, retrying for up to `wait_s`; True when it is empty."""
        deadline = time.monotonic() + wait_s
        while self._outbox:
            self._last_try = time.monotonic()
            try:
                while self._outbox:
                    self._execute(self._outbox[0])
                    self._outbox.pop(0)
            except Exception:  # noqa: BLE001 — still down: keep the rest
                self._rewrite_outbox()
                if time.monotonic() + 2.0 > deadline:
                    return False
                time.sleep(2.0)
                continue
            self._rewrite_outbox()
            log.info("tracking server %s answers again: every buffered MLflow record was sent", self.uri)
        return True

    def _rewrite_outbox(self) -> None:
        if not self._outbox:
            self.outbox_path.unlink(missing_ok=True)
            return
        atomic_write_text(self.outbox_path, "".join(json.dumps(op) + "\n" for op in self._outbox))

    def _save_state(self) -> None:
        atomic_write_text(self.state_path, json.dumps(self.state, indent=2))

    # --- the API the stages use -----------------------------------------------------------------------------

    def run_id(self, key: str, name: str, parent: str | None) -> str | None:
        """The run stored under `key`, reattached (status RUNNING); created as a child of `parent` if new. While
        the server is away a new run is a "pending:<key>" handle, created when the server is back."""
        if not self.enabled:
            return None
        runs = self.state.setdefault("runs", {})
        if key in runs:
            self._send({"op": "status", "run": runs[key], "status": "RUNNING"})
            self._reattached.add(runs[key])
            return runs[key]
        if any(op["op"] == "create" and op["key"] == key for op in self._outbox):
            return f"pending:{key}"  # asked for before a kill, never created: still queued
        self._send({"op": "create", "key": key, "name": name, "parent": parent})
        return runs.get(key, f"pending:{key}")

    @contextmanager
    def run(self, key: str, name: str, parent: str | None = None) -> Iterator[str | None]:
        """A run that ends FINISHED, or FAILED/KILLED when the block raises. The parent run (no `parent`) flushes
        what an unreachable server still owes before it returns."""
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
                self._send({"op": "terminated", "run": run_id, "status": status})
                if parent is None and self._outbox and not self.flush(FLUSH_S):
                    log.warning("tracking server %s still does not answer: %d MLflow records stay in %s; rerun the "
                                "same command to send them", self.uri, len(self._outbox), self.outbox_path)

    def fresh(self, run_id: str, metrics: Mapping[str, float], step: int) -> dict[str, float]:
        """The part of `metrics` that `run_id` does not hold at `step` yet, now counted as held. A reattached
        run's points are read from the store once (one history query per metric key)."""
        if run_id not in self._logged:
            held: set[tuple[str, int]] = set()
            if run_id in self._reattached:
                try:
                    for key in self.mlflow.get_run(run_id).data.metrics:
                        held.update((key, m.step) for m in self.mlflow.get_metric_history(run_id, key))
                except Exception:  # noqa: BLE001
                    if not self.remote:
                        raise
                    log.warning("tracking server %s does not answer: points a killed run logged before cannot be "
                                "told apart and may repeat", self.uri)
            self._logged[run_id] = held
        held = self._logged[run_id]
        out = {k: v for k, v in metrics.items() if (k, step) not in held}
        held.update((k, step) for k in out)
        return out

    def log_params(self, run_id: str | None, params: Mapping[str, Any]) -> None:
        if run_id is not None:
            self._send({"op": "params", "run": run_id, "params": {k: str(v)[:6000] for k, v in params.items()}})

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int = 0) -> None:
        if run_id is None or not metrics:
            return
        now = int(time.time() * 1000)
        points = [[k, float(v), now, step] for k, v in self.fresh(run_id, metrics, step).items()]
        if points:
            self._send({"op": "metrics", "run": run_id, "points": points})

    def log_artifact(self, run_id: str | None, path: str | Path | None, folder: str | None = None) -> None:
        """Copy the file `path` into the run's artifacts (nothing when either is None: not tracked, not made)."""
        if run_id is not None and path is not None:
            self._send({"op": "artifact", "run": run_id, "path": str(Path(path).resolve()), "folder": folder})

    def log_dataset(self, run_id: str | None, name: str, digest: str, source: str | Path, rows: int) -> None:
        """The data a fit trained on, as the run's MLflow dataset input (context "training"): its name, content
        digest, source file and row count (`mlflow.data`'s local source; the runs table's Dataset column)."""
        if run_id is not None:
            self._send({"op": "dataset", "run": run_id, "name": name, "digest": digest,
                        "source": str(Path(source).resolve()), "rows": rows})

    def discard(self) -> None:
        """Delete every MLflow run this run directory made (a failed start: they hold nothing worth keeping)."""
        if not self.enabled:
            return
        for run_id in self.state.get("runs", {}).values():
            self.mlflow.delete_run(run_id)
        self._outbox = []

    def log_model(self, run_id: str | None, key: str, name: str, params: Mapping[str, str]) -> None:
        """An MLflow (logged) model of `run_id` named `name`, with `params` (its lineage); once per `key`, so a
        resumed stage that exports the same checkpoint again does not log a second model."""
        if run_id is None or key in self.state.get("models", {}):
            return
        if any(op["op"] == "model" and op["key"] == key for op in self._outbox):
            return
        self._send({"op": "model", "run": run_id, "key": key, "name": name, "params": dict(params)})

    def lightning_logger(self, run_id: str | None):
        """A Lightning logger writing into `run_id` through this tracker (None when tracking is off)."""
        if run_id is None:
            return None
        from promptcot_pl.tracking.lightning_logger import TrackerLogger

        return TrackerLogger(self, run_id)
