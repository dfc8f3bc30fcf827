"""One resumable supervised fit: base checkpoint + (prompt, target) pairs → an HF model directory.

Layout under `out_dir`: `checkpoints/last.ckpt` while fitting (every `trainer.checkpoint_every_n_steps` steps and
at each epoch end), then `model/` (save_pretrained, model + tokenizer), `metrics.json` and `DONE`.
A rerun after a kill resumes from `last.ckpt`; a finished fit is not redone.

Every fitted model is exported in the serving dtype `model.dtype` (what the engines load: a 7B model in bf16 is
14 GB, not the 28 GB of its fp32 training copy). When the fit trained wider masters (fp32 under `*-mixed`), they
are kept beside it in `model/masters/` (an HF directory vLLM does not read), because a later fit continues from
them (`trainer.load_for_fit`): rounding a fit's result to bf16 between chained fits would undo updates smaller
than bf16's resolution, the reason for fp32 masters. Chains drop the masters of all but their latest models
(`drop_masters`: EM iterations, self-play rounds; self-play from an SFT student drops the other students').
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy

from promptcot_pl.accounting import padding_waste
from promptcot_pl.config import OptimConfig
from promptcot_pl.data.atomic import atomic_dir
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.models import DTYPES, load_tokenizer
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.modules.optim import STATE_FILE, save_state
from promptcot_pl.runner.context import StageContext, log, write_json
from promptcot_pl.runner.pruning import ReportToPruner
from promptcot_pl.trainer import MASTERS, MetricsFirstCheckpoint, build_trainer, full_state_dict, load_for_fit


def intact_checkpoint(path: Path) -> bool:
    """Whether a Lightning checkpoint was written to the end: a torch zip archive whose central directory (written
    last) is there, or a sharded (FSDP / DCP) directory whose `.metadata` (written after the shards) and
    Lightning's `meta.pt` (written after that) are."""
    if path.is_dir():
        return (path / ".metadata").is_file() and zipfile.is_zipfile(path / "meta.pt")
    return zipfile.is_zipfile(path)


def fit_pairs(ctx: StageContext, name: str, base: str | Path, train: Sequence[tuple[str, str]],
              val: Sequence[tuple[str, str]], *, epochs: int, batch_size: int, optim: OptimConfig,
              report_as: str | None = None, packing: bool | None = None, masters: bool = True,
              source: Path | None = None) -> dict[str, float]:
    """Fit `base` on `train` by masked NLL; return held-out NLL before (`nll_init`) and after (`nll`).
    In a sweep, the held-out NLL of every epoch goes to the pruner as metric `report_as` (the stage's name for
    this fit's final NLL), so a trial whose objective is that metric can be stopped mid-fit. `masters`: keep the
    fp32 masters beside the export (a later fit continues from this model). `source`: the file `train` was made
    from, named by the fit's MLflow dataset input (default: the stage's directory)."""
    out_dir = ctx.stage_dir / name
    if (out_dir / "DONE").is_file():
        metrics = json.loads((out_dir / "metrics.json").read_text())
        log.info("%s/%s: already fitted (%s), skipping", ctx.stage_dir.name, name, out_dir / "model")
        return metrics
    cfg = ctx.cfg
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(base)
    data = PairDataModule(tokenizer, train, val, batch_size=batch_size, max_length=cfg.data.max_length,
                          packing=cfg.data.packing if packing is None else packing, num_workers=cfg.data.num_workers,
                          seed=cfg.seed)
    fit_run = ctx.tracker.run_id(f"{ctx.stage_dir.name}/{name}", f"{ctx.stage_dir.name}.{name}", parent=ctx.run_id)
    last = out_dir / "checkpoints" / "last.ckpt"  # a directory of shards under FSDP
    init_path = out_dir / "init.json"
    if not last.exists() or not init_path.is_file():
        write_json(init_path, {"nll_init": validate(ctx, base, data, optim)})
    nll_init = json.loads(init_path.read_text())["nll_init"]

    module = WeightedNLLModule(load_for_fit(base, cfg.trainer), optim, cfg.trainer.logits_chunk_mib,
                               optimizer_state=continued_state(base, optim))
    checkpoint = MetricsFirstCheckpoint(dirpath=out_dir / "checkpoints", save_last=True, save_top_k=0,
                                        every_n_train_steps=cfg.trainer.checkpoint_every_n_steps)
    callbacks: list = [checkpoint]
    pruning = ReportToPruner(ctx.report, report_as) if ctx.report is not None and report_as else None
    if pruning is not None:
        callbacks.append(pruning)
    trainer = build_trainer(cfg.trainer, max_epochs=epochs, default_root_dir=out_dir,
                            logger=ctx.tracker.lightning_logger(fit_run), callbacks=callbacks)
    if last.exists() and not intact_checkpoint(last):
        # Lightning writes last.ckpt through a temporary file that is *copied* onto it when /tmp is another
        # filesystem: a kill or a full disk mid-copy leaves a truncated file that would crash every rerun
        log.warning("%s/%s: %s is incomplete (cut while being written): the fit starts over", ctx.stage_dir.name,
                    name, last)
        shutil.rmtree(last) if last.is_dir() else last.unlink()
    resume = str(last) if last.exists() else None
    if resume:
        log.info("%s/%s: resuming from %s", ctx.stage_dir.name, name, last)
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    if pruning is not None:
        pruning.raise_if_pruned()
    export_trained(trainer, tokenizer, out_dir / "model", cfg.model.dtype, masters, optimizer=optim.keep_state)
    ctx.log_model(out_dir / "model", fit_run, train, source)
    # The last epoch ended with a validation of the final weights; a fit resumed after its last epoch did not.
    final = trainer.callback_metrics.get("val/nll")
    nll = float(final) if final is not None else validate(ctx, out_dir / "model", data, optim)
    metrics = {"nll_init": nll_init, "nll": nll, "steps": trainer.global_step, "dropped": data.dropped,
               "padding_waste": padding_waste(trainer)}
    on_rank_zero(_finish, out_dir, metrics)
    log.info("%s/%s: held-out NLL per token %.3f → %.3f (%d steps)", ctx.stage_dir.name, name, nll_init, nll,
             trainer.global_step)
    return metrics


def _finish(out_dir: Path, metrics: dict[str, float]) -> None:
    write_json(out_dir / "metrics.json", metrics)
    (out_dir / "DONE").touch()
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # only needed to resume this fit


def validate(ctx: StageContext, model_dir: str | Path, data: PairDataModule, optim: OptimConfig) -> float:
    """Held-out NLL per target token of the model in `model_dir`, by a Trainer of its own: under FSDP a module
    is wrapped in place by the first Trainer that sets it up, so the fitted module is never validated separately."""
    trainer = build_trainer(replace(ctx.cfg.trainer, enable_progress_bar=False), max_epochs=1,
                            default_root_dir=ctx.stage_dir)
    probe = WeightedNLLModule(load_for_fit(model_dir, ctx.cfg.trainer), optim, ctx.cfg.trainer.logits_chunk_mib)
    (result,) = trainer.validate(probe, datamodule=data, verbose=False)
    return float(result["val/nll"])


def continued_state(base: str | Path, optim: OptimConfig) -> Path | None:
    """The AdamW state a fit of `base` starts from (`optim.continue_state`), or None for a fresh one."""
    return Path(base) / STATE_FILE if optim.continue_state else None


def export_trained(trainer: L.Trainer, tokenizer, target: Path, dtype: str, masters: bool = True,
                   optimizer: bool = False) -> Path:
    """The fitted module's `model` in HF format at `target` (complete or absent), in `dtype` (`model.dtype`), with
    its wider trained weights in `target/masters/` when they are wider and `masters` (a later fit continues from
    them), and with `optimizer` its final AdamW state (`optimizer.pt`, for a fit with `optim.continue_state`).
    Every rank calls this: under FSDP the shards are gathered into one state dict, which rank 0 writes."""
    state = full_state_dict(trainer.strategy)
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    adamw = trainer.optimizers[0] if optimizer and trainer.optimizers else None
    if adamw is not None and isinstance(trainer.strategy, FSDPStrategy):
        log.warning("%s: the optimizer state is sharded under FSDP and is not kept; a fit with "
                    "optim.continue_state cannot start from this model", target)
        adamw = None
    on_rank_zero(export_hf, trainer.lightning_module.model, tokenizer, target, weights, dtype, masters, adamw)
    return target


def export_hf(model, tokenizer, target: Path, state_dict: dict | None = None, dtype: str | None = None,
              masters: bool = True, optimizer: torch.optim.Optimizer | None = None) -> Path:
    """save_pretrained into a temporary sibling, then rename, so `target` is complete or absent; in `dtype` (None:
    as the weights are), plus, with `masters`, `masters/` with the weights as they are when they are wider."""
    weights = state_dict if state_dict is not None else model.state_dict()
    serve = DTYPES[dtype] if dtype else None
    wider = masters and serve is not None and any(v.is_floating_point() and v.element_size() > serve.itemsize
                                                  for v in weights.values())

    def build(tmp: Path) -> None:
        if wider:
            model.save_pretrained(tmp / MASTERS, state_dict=weights)
        cast = {k: v.to(serve) if serve is not None and v.is_floating_point() else v for k, v in weights.items()}
        model.save_pretrained(tmp, state_dict=cast)
        if dtype:  # config.json names the dtype the weights are stored in (save_pretrained writes the model's)
            config = json.loads((tmp / "config.json").read_text())
            (tmp / "config.json").write_text(json.dumps({**config, "dtype": dtype}, indent=2) + "\n")
        tokenizer.save_pretrained(tmp)
        if optimizer is not None:
            save_state(optimizer, tmp / STATE_FILE)

    return atomic_dir(target, build)


def drop_masters(keep: Sequence[Path], models: Sequence[Path]) -> None:
    """Remove the `masters/` (and `optimizer.pt`) of every model in `models` but those in `keep` (rank 0): a chain's next fit starts from
    `keep` only. The chain's latest models keep theirs, so a chain extended later (more EM iterations or self-play
    rounds) continues exactly."""
    kept = {Path(path).resolve() for path in keep}
    for model in models:
        if Path(model).resolve() in kept:
            continue
        if (Path(model) / MASTERS / "config.json").is_file():
            shutil.rmtree(Path(model) / MASTERS, ignore_errors=True)
        (Path(model) / STATE_FILE).unlink(missing_ok=True)  # its AdamW state too: no fit continues it
