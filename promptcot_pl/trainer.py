"""`build_trainer`: the one place where Lightning Trainer keyword arguments are made."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from promptcot_pl.config.schema import TrainerConfig


def build_trainer(cfg: TrainerConfig, *, max_epochs: int, default_root_dir: str | Path,
                  logger: Logger | None = None, callbacks: Sequence[Callback] = (), max_steps: int = -1) -> L.Trainer:
    devices: int | str = int(cfg.devices) if cfg.devices.isdigit() else cfg.devices
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,  # type: ignore[arg-type]
        max_epochs=max_epochs,
        max_steps=max_steps,
        gradient_clip_val=cfg.gradient_clip_val,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        log_every_n_steps=cfg.log_every_n_steps,
        enable_progress_bar=cfg.enable_progress_bar,
        enable_model_summary=False,
        deterministic=cfg.deterministic,
        num_sanity_val_steps=0,
        logger=logger if logger is not None else False,
        callbacks=list(callbacks),
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        default_root_dir=str(default_root_dir),
    )
