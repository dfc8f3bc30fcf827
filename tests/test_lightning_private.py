"""What the package relies on in Lightning's non-public code. `promptcot_pl/lightning_private.py` holds the one
private call that resume and logging rest on; the other protected names are hooks the package overrides or reads
where Lightning offers no public one (each listed below, with where). A Lightning release that renames or reorders
any of them fails here, by name, instead of silently changing a fit."""

import inspect

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import _LoggerConnector


def test_the_training_loop_logs_step_metrics_after_the_batch_end_hooks():
    """lightning_private.log_step_metrics_now: what the loop calls after the hooks ModelCheckpoint saves in."""
    assert callable(getattr(_LoggerConnector, "update_train_step_metrics", None))
    source = inspect.getsource(_TrainingEpochLoop.advance)
    hooks = source.index('"on_train_batch_end"')
    assert source.index("_logger_connector.update_train_step_metrics()", hooks) > hooks


def test_the_protected_hooks_the_package_overrides_still_exist_with_their_signatures():
    expected = {
        # trainer.CPUFSDPStrategy: FSDP wrapping on CPU; its full state dict
        (FSDPStrategy, "_setup_model"): ["self", "model"],
        # trainer.MetricsFirstCheckpoint: the save every checkpoint goes through
        (ModelCheckpoint, "_save_checkpoint"): ["self", "trainer", "filepath"],
        # trainer.CountedEpochs: the progress bar's epoch text
        (RichProgressBar, "_get_train_description"): ["self", "current_epoch"],
    }
    for (cls, name), params in expected.items():
        assert list(inspect.signature(getattr(cls, name)).parameters) == params, f"{cls.__name__}.{name}"
    assert "_state_dict_type" in inspect.getsource(FSDPStrategy.__init__)  # full or sharded checkpoints


def test_the_protected_names_the_package_reads_still_exist():
    from lightning.fabric.utilities.logger import _convert_params, _flatten_dict  # tracking/lightning_logger.py

    assert _flatten_dict(_convert_params({"a": {"b": 1}})) == {"a/b": 1}
    assert "_trainer" in inspect.getsource(L.LightningModule.__init__)  # modules/reduce.py: None outside a fit
    from lightning.pytorch.plugins.precision import FSDPPrecision, HalfPrecision

    for plugin in (HalfPrecision, FSDPPrecision):  # precision.py: the dtype a *-true precision converts to
        assert "_desired_input_dtype" in inspect.getsource(plugin.__init__), plugin.__name__


def test_the_internals_the_issue_named_are_gone_from_the_package():
    from pathlib import Path

    import promptcot_pl

    root = Path(promptcot_pl.__file__).parent
    private = ("_logger_connector", "restarted_mid_epoch", "_setup_activation_checkpointing", "batch_progress",
               "_activation_checkpointing_kwargs")
    offenders = [f"{path.relative_to(root)}: {name}" for path in root.rglob("*.py")
                 if path.name != "lightning_private.py" for name in private if name in path.read_text()]
    assert offenders == []
