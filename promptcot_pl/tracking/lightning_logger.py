"""A Lightning logger that writes a fit's metrics and hyperparameters into its MLflow run through the `Tracker`:
one point per (metric, step) across restarts (a fit resumed from its last checkpoint recomputes steps a killed
process had logged: they are dropped, not doubled) and no lost metrics while a tracking server is away (the
tracker's outbox). Lightning's own `MLFlowLogger` would call the server directly and fail the fit. Kept apart
from `tracker.py` so that importing the tracker does not import Lightning."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only


class TrackerLogger(Logger):
    def __init__(self, tracker: Any, run_id: str) -> None:
        super().__init__()
        self._tracker, self.run_id = tracker, run_id

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run_id

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = {k: float(v) for k, v in metrics.items() if not isinstance(v, str)}
        self._tracker.log_metrics(self.run_id, values, step=step or 0)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        from lightning.fabric.utilities.logger import _convert_params, _flatten_dict

        self._tracker.log_params(self.run_id, _flatten_dict(_convert_params(params)))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._tracker._send({"op": "terminated", "run": self.run_id,
                             "status": "FINISHED" if status == "success" else "FAILED"})
