"""One resumable supervised fit: base checkpoint + (prompt, target) pairs → an HF model directory.

Layout under `out_dir`: `checkpoints/last.ckpt` while fitting (every `trainer.checkpoint_every_n_steps` steps and
at each epoch end), then `model/` (save_pretrained, model + tokenizer), `metrics.json` and `DONE`.
A rerun after a kill resumes from `last.ckpt`; a finished fit is not redone.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from promptcot_pl.config.schema import OptimConfig
from promptcot_pl.data.datamodule import PairDataModule
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import SFTModule
from promptcot_pl.recipes.context import StageContext, log, write_json
from promptcot_pl.recipes.pruning import ReportToPruner
from promptcot_pl.trainer import build_trainer


def fit_pairs(ctx: StageContext, name: str, base: str | Path, train: Sequence[tuple[str, str]],
              val: Sequence[tuple[str, str]], *, epochs: int, batch_size: int, optim: OptimConfig,
              report_as: str | None = None, packing: bool | None = None) -> dict[str, float]:
    """Fit `base` on `train` by masked NLL; return held-out NLL before (`nll_init`) and after (`nll`).
    In a sweep, the held-out NLL of every epoch goes to the pruner as metric `report_as` (the stage's name for
    this fit's final NLL), so a trial whose objective is that metric can be stopped mid-fit."""
    out_dir = ctx.stage_dir / name
    if (out_dir / "DONE").is_file():
        metrics = json.loads((out_dir / "metrics.json").read_text())
        log.info("%s/%s: already fitted (%s), skipping", ctx.stage_dir.name, name, out_dir / "model")
        return metrics
    cfg = ctx.cfg
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(base)
    module = SFTModule(load_model(base, cfg.model.dtype), optim)
    data = PairDataModule(tokenizer, train, val, batch_size=batch_size, max_length=cfg.data.max_length,
                          packing=cfg.data.packing if packing is None else packing, num_workers=cfg.data.num_workers)
    fit_run = ctx.tracker.run_id(f"{ctx.stage_dir.name}/{name}", f"{ctx.stage_dir.name}.{name}", parent=ctx.run_id)
    checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", save_last=True, save_top_k=0,
                                 every_n_train_steps=cfg.trainer.checkpoint_every_n_steps)
    callbacks: list = [checkpoint]
    pruning = ReportToPruner(ctx.report, report_as) if ctx.report is not None and report_as else None
    if pruning is not None:
        callbacks.append(pruning)
    trainer = build_trainer(cfg.trainer, max_epochs=epochs, default_root_dir=out_dir,
                            logger=ctx.tracker.lightning_logger(fit_run), callbacks=callbacks)

    last = out_dir / "checkpoints" / "last.ckpt"
    init_path = out_dir / "init.json"
    if not last.is_file() or not init_path.is_file():
        (nll_init,) = [m["val/nll"] for m in trainer.validate(module, datamodule=data, verbose=False)]
        write_json(init_path, {"nll_init": nll_init})
    nll_init = json.loads(init_path.read_text())["nll_init"]
    resume = str(last) if last.is_file() else None
    if resume:
        log.info("%s/%s: resuming from %s", ctx.stage_dir.name, name, last)
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    if pruning is not None:
        pruning.raise_if_pruned()
    (nll,) = [m["val/nll"] for m in trainer.validate(module, datamodule=data, verbose=False)]
    if trainer.is_global_zero:
        export_hf(module.model, tokenizer, out_dir / "model")
        metrics = {"nll_init": nll_init, "nll": nll, "steps": trainer.global_step, "dropped": data.dropped,
                   "padding_waste": module.padding_waste}
        write_json(out_dir / "metrics.json", metrics)
        (out_dir / "DONE").touch()
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # only needed to resume this fit
    log.info("%s/%s: held-out NLL per token %.3f → %.3f (%d steps)", ctx.stage_dir.name, name, nll_init, nll,
             trainer.global_step)
    return {"nll_init": nll_init, "nll": nll, "steps": trainer.global_step, "dropped": data.dropped,
            "padding_waste": module.padding_waste}


def export_hf(model, tokenizer, target: Path) -> Path:
    """save_pretrained into a temporary sibling, then rename, so `target` is complete or absent."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target
