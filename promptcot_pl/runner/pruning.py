"""A Lightning callback that passes a fit's held-out metric to a sweep's pruner after every validation run.

Stages never import Optuna: a sweep hands the pipeline a `report(step, metrics)` function (`sweeps/study.py`),
which raises `optuna.TrialPruned` when the pruner says stop. This callback is that function's door into a running
fit — the role of `optuna_integration.PyTorchLightningPruningCallback`, without tying the recipes to a trial
object. Every rank calls `report` after the same validation run; the sweep's reporter asks the pruner on rank 0
and broadcasts its decision (`sweeps/study.py`), so every rank stops at the same epoch (a rank that raised alone
would leave the others waiting in a collective). The fit then ends normally (`trainer.should_stop`) and
`raise_if_pruned()` re-raises the pruner's exception once `trainer.fit` has returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import lightning as L
from lightning.pytorch.callbacks import Callback

Report = Callable[[int, Mapping[str, float]], None]


class ReportToPruner(Callback):
    """After validation epoch e (1-based), call `report(e, {name: trainer.callback_metrics[monitor]})`."""

    def __init__(self, report: Report, name: str, monitor: str = "val/nll") -> None:
        self.report, self.name, self.monitor = report, name, monitor
        self.pruned: BaseException | None = None

    # on_validation_end, not on_validation_epoch_end: callbacks' epoch-end hooks run before the module's, where
    # WeightedNLLModule logs the epoch's val/nll, so only here does callback_metrics hold this epoch's value
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.monitor not in trainer.callback_metrics:
            return
        try:  # on every rank: the sweep's reporter asks the pruner on rank 0 and shares its decision
            self.report(trainer.current_epoch + 1, {self.name: float(trainer.callback_metrics[self.monitor])})
        except Exception as exc:  # noqa: BLE001 — optuna.TrialPruned, re-raised after the fit
            self.pruned = exc
            trainer.should_stop = True

    def raise_if_pruned(self) -> None:
        if self.pruned is not None:
            raise self.pruned
