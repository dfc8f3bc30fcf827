"""What `promptcot_pl/lightning_private.py` relies on in Lightning's private code. A Lightning release that
changes it fails here, by name, before a resumed run silently loses an MLflow point."""

import inspect

from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import _LoggerConnector


def test_the_training_loop_logs_step_metrics_after_the_batch_end_hooks():
    assert callable(getattr(_LoggerConnector, "update_train_step_metrics", None))
    source = inspect.getsource(_TrainingEpochLoop.advance)
    hooks = source.index('"on_train_batch_end"')
    assert source.index("_logger_connector.update_train_step_metrics()", hooks) > hooks


def test_the_package_touches_no_other_private_lightning_api():
    from pathlib import Path

    import promptcot_pl

    root = Path(promptcot_pl.__file__).parent
    private = ("_logger_connector", "restarted_mid_epoch", "_setup_activation_checkpointing", "batch_progress",
               "_activation_checkpointing_kwargs")
    offenders = [f"{path.relative_to(root)}: {name}" for path in root.rglob("*.py")
                 if path.name != "lightning_private.py" for name in private if name in path.read_text()]
    assert offenders == []
