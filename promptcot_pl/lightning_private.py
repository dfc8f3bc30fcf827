"""The one place this package touches a private Lightning API; `tests/test_lightning_private.py` fails when a
Lightning release changes what it relies on (the `<2.7` pin in pyproject.toml is then the release to read).

- `log_step_metrics_now`: a training step's metrics handed to the loggers now. Lightning's training loop does this
  after the batch-end hooks, and `ModelCheckpoint` saves inside those hooks; a checkpoint that must not get ahead
  of the step's metrics (`trainer.MetricsFirstCheckpoint`) has no public hook that runs between the two.
"""

from __future__ import annotations

import lightning as L


def log_step_metrics_now(trainer: L.Trainer) -> None:
    """What the training loop calls after the batch-end hooks; calling it again there writes the same (metric,
    step) points again, which the tracker keeps once."""
    trainer._logger_connector.update_train_step_metrics()
