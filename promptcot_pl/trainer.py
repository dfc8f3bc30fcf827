"""`build_trainer`: the one place where Lightning Trainer keyword arguments are made.

Strategies (`trainer.strategy`): `auto` (one device, or DDP when launched with several processes), `ddp`, and
`fsdp` — FullyShardedDataParallel from Lightning's FSDPStrategy with
- auto-wrap of the model's decoder layers (the classes a Hugging Face model lists in `_no_split_modules`, so any
  HF architecture is wrapped layer by layer without naming its classes here);
- activation checkpointing of the same layers (`trainer.activation_checkpointing`);
- mixed precision from `trainer.precision` (bf16-mixed on GPU) over fp32 master weights (`training_dtype`: every
  fit and scoring pass loads its model in fp32, whatever the inference dtype `model.dtype`; FSDP shards the fp32
  copy and its MixedPrecision casts parameters to bf16 for compute, while buffers — RoPE's frequencies — and the
  gradient reduce stay fp32: `precision.py`) and sharded checkpoints
  (`trainer.fsdp_state_dict: sharded`: each rank writes its own shard; resuming reads them back).
Lightning refuses FSDP without a GPU; `CPUFSDPStrategy` runs the same wrapping code on CPU with gloo (FSDP needs
`device_id=cpu` there, and a full state dict gathered without CPU offload, which segfaults on CPU), so CI tests it.

Under a launcher (torchrun, `fabric run`) the process counts come from the launcher, not from the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, Strategy
from transformers import PreTrainedModel

from promptcot_pl import distributed
from promptcot_pl.accounting import TokenAccounting
from promptcot_pl.config import TrainerConfig
from promptcot_pl.lightning_private import log_step_metrics_now
from promptcot_pl.models import load_model
from promptcot_pl.precision import fsdp_mixed_precision, precision_plugin


def training_dtype(cfg: TrainerConfig) -> str:
    """The storage dtype of a fit's weights and optimizer states: fp32 unless the precision is bf16-true (allowed
    only with trainer.bf16_true_optimizer=kahan, checked at config load)."""
    return {"bf16-true": "bfloat16"}.get(cfg.precision, "float32")


def meta_init(cfg: TrainerConfig) -> bool:
    """Whether this process builds its models empty: a rank other than 0 of a multi-process FSDP run."""
    return cfg.strategy == "fsdp" and distributed.world_size() > 1 and not distributed.is_zero()


MASTERS = "masters"  # a fitted model's wider trained weights, beside its export in the serving dtype (runner/fit.py)


def training_source(path: str | Path, dtype: str) -> str | Path:
    """Where a fit or scoring pass in `dtype` reads the model at `path`: its fp32 `masters/` when it has them and
    the pass runs in fp32 (the exact fitted weights), else the checkpoint itself. Fits and scoring passes read the
    same weights, so a DPO policy starts exactly at its reference (margin 0 at step 0); engines serve the export."""
    masters = Path(path) / MASTERS
    return masters if dtype == "float32" and (masters / "config.json").is_file() else path


def load_for_fit(path: str | Path, cfg: TrainerConfig) -> PreTrainedModel:
    """The model a fit starts from, in the training dtype (`training_source`). Under FSDP with several processes
    only rank 0 reads the checkpoint; the others build it on the meta device and FSDP materialises their shards and
    fills them from rank 0 (`sync_module_states`): one read of a 7B checkpoint per fit instead of one per rank, and
    no full copy in every rank's memory before sharding."""
    dtype = training_dtype(cfg)
    return load_model(training_source(path, dtype), dtype, empty=meta_init(cfg))


class _Materialize:
    """FSDP's `param_init_fn` for meta-built modules: empty storage on the device for every meta parameter and
    buffer (the values arrive from rank 0), one new tensor per shared meta tensor so tied weights stay tied."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.made: dict[int, tuple[torch.Tensor, Any]] = {}  # id of a meta tensor → (it, its copy)

    def __call__(self, module: torch.nn.Module) -> None:
        for slot in (module._parameters, module._buffers):
            for name, tensor in slot.items():
                if tensor is None or not tensor.is_meta:
                    continue
                if id(tensor) not in self.made:
                    empty = torch.empty_like(tensor, device=self.device)
                    self.made[id(tensor)] = (tensor, torch.nn.Parameter(empty, tensor.requires_grad)
                                             if isinstance(tensor, torch.nn.Parameter) else empty)
                slot[name] = self.made[id(tensor)][1]


class DecoderLayerPolicy:
    """FSDP wrap / checkpoint policy: every module whose class the HF model lists in `_no_split_modules`."""

    def __init__(self) -> None:
        self.names: set[str] | None = None

    def __call__(self, module: torch.nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
        if self.names is None:  # the first call sees the root: collect the layer class names once
            self.names = {name for m in module.modules() for name in (getattr(m, "_no_split_modules", None) or ())}
        return True if recurse else type(module).__name__ in self.names


class CPUFSDPStrategy(FSDPStrategy):
    """FSDPStrategy that also runs on CPU (gloo), and checkpoints the activations of the layers `checkpoint_layers`
    picks through torch's public `apply_activation_checkpointing` on every device. On GPU the wrapping is
    FSDPStrategy's unchanged."""

    def __init__(self, *args: Any, checkpoint_layers: DecoderLayerPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint_layers = checkpoint_layers

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = super()._setup_model(model) if self.root_device.type != "cpu" else self._wrap_on_cpu(model)
        if self.checkpoint_layers is not None:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

            # non-reentrant recompute (torch's default wrapper): the one FSDP supports; pinned by
            # tests/test_fsdp_precision.py, which counts the wrapped layers
            apply_activation_checkpointing(model, auto_wrap_policy=self.checkpoint_layers)
        return model

    def _wrap_on_cpu(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        kwargs = dict(self.kwargs)
        if kwargs.pop("sync_module_states", False):
            # FSDP's own rank-0 broadcast refuses CPU tensors: materialise the empty ranks' models and broadcast
            # rank 0's weights here, before wrapping (on GPUs FSDP does it unit by unit)
            materialize = kwargs.pop("param_init_fn")
            for module in model.modules():
                materialize(module)
            for tensor in [*model.parameters(), *model.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0)
        return FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                        mixed_precision=self.mixed_precision_config,
                                        sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"),
                                        **kwargs)

    def lightning_module_state_dict(self) -> dict[str, Any]:
        if self._state_dict_type == "full":
            return full_state_dict(self)
        return super().lightning_module_state_dict()


class ClipShardedGradients(Callback):
    """Gradient-norm clipping under FSDP, where Lightning's own (`gradient_clip_val`) is not supported: FSDP's
    `clip_grad_norm_` computes the norm over all shards."""

    def __init__(self, max_norm: float) -> None:
        self.max_norm = max_norm

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        fsdp_model: Any = trainer.strategy.model  # the FSDP-wrapped module
        fsdp_model.clip_grad_norm_(self.max_norm)


class ResumeMidEpoch(Callback):
    """After a resume from a mid-epoch checkpoint, start the data where the checkpoint left it: Lightning
    restores the step counters but restarts the epoch's data from its first batch. The count of the epoch's
    batches already trained on is this callback's checkpointed state (Lightning's public callback `state_dict`);
    the batch sampler skips them (`resume_after`). Pinned bit for bit by tests/test_trainer_resume.py (killed fits
    resume to the uninterrupted weights) and the kill-anywhere chaos test in tests/test_pipeline.py."""

    def __init__(self) -> None:
        self.done = 0  # batches of the current epoch trained on
        self.to_skip = 0  # read from a checkpoint: batches the resumed epoch must not see again

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # runs before ModelCheckpoint's hook (Lightning orders checkpoint callbacks last). A checkpoint written at
        # the epoch's last batch is an epoch end to Lightning: it goes on with the next epoch, whose batches must
        # not be skipped — hence 0, not the epoch's length
        self.done = 0 if batch_idx + 1 >= trainer.num_training_batches else batch_idx + 1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # before the resumed epoch's first batch is drawn (`data.sharding.ResumableLoader` reads its sampler then);
        # Lightning calls no epoch-start hook for the epoch it resumes
        sampler: Any = getattr(trainer.train_dataloader, "batch_sampler", None)
        if self.to_skip and hasattr(sampler, "resume_after"):
            sampler.resume_after(self.to_skip)
        self.done, self.to_skip = self.to_skip, 0

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.to_skip = int(state_dict.get("done", 0))


class MetricsFirstCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` that hands a training step's metrics to the loggers before it writes that step's
    checkpoint. Lightning writes them after the batch-end hooks, so a process killed between the checkpoint and
    that write would resume after the step and never log it: a lost MLflow point (pinned by
    tests/test_trainer_resume.py::test_a_step_killed_right_after_its_checkpoint_keeps_its_metrics). Lightning
    then writes the same step again; the tracker keeps one point per (metric, step)."""

    _in_batch_end = False  # a save from the train-batch hook (epoch-end and validation saves have no step metrics)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        self._in_batch_end = True
        try:
            super().on_train_batch_end(trainer, *args, **kwargs)
        finally:
            self._in_batch_end = False

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self._in_batch_end:
            log_step_metrics_now(trainer)
        super()._save_checkpoint(trainer, filepath)


def full_state_dict(strategy: Strategy) -> dict[str, Any]:
    """The LightningModule's complete state dict (keys `model.…`), complete on rank 0. Under FSDP every rank must
    call this: the shards are gathered."""
    if not isinstance(strategy, FSDPStrategy):
        module: Any = strategy.lightning_module  # set during a fit
        return module.state_dict()
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    config = FullStateDictConfig(offload_to_cpu=strategy.root_device.type != "cpu", rank0_only=True)
    model: Any = strategy.model  # the FSDP-wrapped module, set during a fit
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, config):
        return model.state_dict()


def full_weights(strategy: Strategy) -> dict[str, torch.Tensor]:
    """The fitted HF model's complete state dict (its own keys) on every rank: what an engine beside each rank
    serves during online training. Under FSDP every rank must call this (the shards are gathered to each)."""
    module: Any = strategy.lightning_module
    if not isinstance(strategy, FSDPStrategy):
        return module.model.state_dict()
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    config = FullStateDictConfig(offload_to_cpu=strategy.root_device.type != "cpu", rank0_only=False)
    model: Any = strategy.model
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, config):
        state = model.state_dict()
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _strategy(cfg: TrainerConfig, accelerator: str, multi: bool) -> str | Strategy:
    match cfg.strategy:
        case "fsdp":
            sync: dict[str, Any] = {}
            if distributed.world_size() > 1:  # ranks other than 0 built their models empty (`load_for_fit`)
                device = torch.device("cuda", torch.cuda.current_device()) if accelerator in ("gpu", "cuda") \
                    else torch.device("cpu")
                sync = {"sync_module_states": True, "param_init_fn": _Materialize(device)}
            return CPUFSDPStrategy(auto_wrap_policy=DecoderLayerPolicy(),
                                   mixed_precision=fsdp_mixed_precision(cfg.precision),
                                   checkpoint_layers=DecoderLayerPolicy() if cfg.activation_checkpointing else None,
                                   sharding_strategy=cfg.fsdp_sharding, state_dict_type=cfg.fsdp_state_dict, **sync)
        case "ddp":
            return DDPStrategy()
        case _:  # auto: Lightning would pick a spawning strategy on CPU; a launcher already made the processes
            return DDPStrategy() if multi else "auto"


class CountedEpochs(RichProgressBar):
    """Lightning's rich progress bar, counting epochs as people do: "Epoch 1/3" for the first of three (Lightning
    prints "Epoch 0/2"; a 3-epoch fit ending on "Epoch 2/2" reads as two)."""

    def get_metrics(self, trainer: L.Trainer,
                    pl_module: L.LightningModule) -> dict[str, int | str | float | dict[str, float]]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the logger's version (an MLflow run id's tail): the run line says which run
        return items

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {current_epoch + 1}" + (f"/{self.trainer.max_epochs}" if self.trainer.max_epochs else "")
        return f"{text:{len(self.validation_description)}}" if len(self.validation_description) > len(text) else text


def build_trainer(cfg: TrainerConfig, *, max_epochs: int, default_root_dir: str | Path,
                  logger: Logger | None = None, callbacks: Sequence[Callback] = (), max_steps: int = -1) -> L.Trainer:
    if distributed.launched():
        devices, num_nodes = distributed.local_world()
    else:
        devices = int(cfg.devices) if cfg.devices.isdigit() else cfg.devices  # type: ignore[assignment]
        num_nodes = cfg.num_nodes
    accelerator = cfg.accelerator
    clip = cfg.gradient_clip_val
    callbacks = [*callbacks, ResumeMidEpoch(), TokenAccounting()]
    if cfg.enable_progress_bar and distributed.is_zero():
        callbacks.append(CountedEpochs())
    if cfg.strategy == "fsdp":
        if accelerator == "auto":
            accelerator = "gpu" if torch.cuda.is_available() else "cpu"
        if clip:
            callbacks.append(ClipShardedGradients(clip))
            clip = None
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        # the budget left to an engine beside the fit (config/loading.py checks the two add up)
        torch.cuda.set_per_process_memory_fraction(cfg.memory_fraction, torch.cuda.current_device())
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=_strategy(cfg, accelerator, distributed.launched()),
        # a plugin that keeps buffers in fp32 and batches uncast where Lightning's would not (promptcot_pl/precision.py)
        **({"plugins": [plugin]} if (plugin := precision_plugin(cfg.precision, cfg.strategy == "fsdp"))
           else {"precision": cfg.precision}),
        max_epochs=max_epochs,
        max_steps=max_steps,
        gradient_clip_val=clip,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        log_every_n_steps=cfg.log_every_n_steps,
        enable_progress_bar=cfg.enable_progress_bar and distributed.is_zero(),
        enable_model_summary=False,
        deterministic=cfg.deterministic,
        num_sanity_val_steps=0,
        # our loaders split global batches over ranks themselves (data/sharding.py)
        use_distributed_sampler=False,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        default_root_dir=str(default_root_dir),
    )
