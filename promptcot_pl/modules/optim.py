"""The optimizer every fitting module uses: AdamW (no decay on norms and biases) + a warmup/decay schedule;
torch-optimi's AdamW with Kahan summation when the weights are stored in bf16 (`trainer.precision=bf16-true`).

The decay groups are chosen by parameter *name* with transformers' own rule (`trainer_pt_utils.get_parameter_names`
with the patterns `transformers.Trainer` uses: LayerNorm layers and names holding "bias" or a "norm"), never by
`p.ndim`: FSDP flattens parameters into 1-D shards before `configure_optimizers` runs, so an ndim rule would put
every parameter in the no-decay group and weight decay would silently vanish (tests/test_optimizer_groups.py). Wrapper prefixes
(FSDP, activation checkpointing, torch.compile) are removed from names before they are compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import get_scheduler
from transformers.trainer_pt_utils import get_parameter_names

from promptcot_pl.config import OptimConfig
from promptcot_pl.data.atomic import atomic_write

NO_DECAY = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]  # transformers.Trainer's
_WRAPPERS = re.compile(r"(?:_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)\.")


def clean_name(name: str) -> str:
    return _WRAPPERS.sub("", name)


def parameter_groups(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """(names with weight decay, names without), trainable parameters only, in `named_parameters` order."""
    decayed = {clean_name(n) for n in get_parameter_names(model, [torch.nn.LayerNorm], NO_DECAY)}
    names = [clean_name(n) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n in names if n in decayed], [n for n in names if n not in decayed]


def adamw_with_schedule(model: torch.nn.Module, optim: OptimConfig, total_steps: int,
                        state: Path | None = None):
    """What `configure_optimizers` returns: AdamW + `transformers.get_scheduler`, stepped every optimizer step.
    `state`: an `optimizer.pt` (`save_state`) whose moments and step counts the new AdamW starts from; its
    learning rate, decay and betas are this fit's."""
    decay_names = set(parameter_groups(model)[0])
    trainable = [(clean_name(n), p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in trainable if n in decay_names], "weight_decay": optim.weight_decay},
              {"params": [p for n, p in trainable if n not in decay_names], "weight_decay": 0.0}]
    beta1, beta2 = optim.betas
    if any(p.dtype in (torch.bfloat16, torch.float16) for _, p in trainable):
        # half-precision weights (bf16-true, opted in at load): torch-optimi's AdamW with Kahan summation, which
        # carries each update's rounding error to the next step; plain AdamW would lose updates below bf16's
        # resolution (tests/test_precision.py). Same update rule otherwise (PyTorch's eps, lr-coupled decay).
        import optimi

        optimizer = optimi.AdamW(groups, lr=optim.lr, betas=(beta1, beta2), eps=1e-8, kahan_sum=True, foreach=False)
    else:
        optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=(beta1, beta2))
    if state is not None:
        load_state(optimizer, state)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule(optimizer, optim, total_steps),
                                                     "interval": "step"}}


def schedule(optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int):
    """`optim.scheduler` over `total_steps` (transformers' schedules), its warmup rounded up (`OptimConfig.warmup`)
    and starting at lr·1/(w+1) instead of 0: transformers' warmup spends its first step at lr 0, after which a
    one-step warmup would be a full-lr step again (tests/test_schedule.py)."""
    warmup = optim.warmup(total_steps)
    if optim.scheduler == "wsd":
        decay = min(math.ceil(optim.decay_ratio * total_steps), total_steps - warmup)
        scheduler = get_scheduler("warmup_stable_decay", optimizer, num_warmup_steps=warmup,
                                  num_training_steps=total_steps, scheduler_specific_kwargs={"num_decay_steps": decay})
    else:
        # transformers' "constant" ignores a warmup: "constant_with_warmup" is a constant lr after one
        name = "constant_with_warmup" if optim.scheduler == "constant" and warmup else optim.scheduler
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    if warmup:
        scheduler.lr_lambdas = [_warm_from_first_step(f, warmup) for f in scheduler.lr_lambdas]
        for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
            group["lr"] = group["initial_lr"] * factor(scheduler.last_epoch)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return scheduler


def _warm_from_first_step(decay: Callable[[int], float], warmup: int) -> Callable[[int], float]:
    return lambda step: (step + 1) / (warmup + 1) if step < warmup else decay(step)


STATE_FILE = "optimizer.pt"
# what the new fit sets; everything else of a parameter group (torch-optimi keeps its step count there) continues
_HYPERPARAMETERS = {"params", "lr", "initial_lr", "betas", "beta1", "beta2", "weight_decay", "max_lr"}


def _name(optimizer: torch.optim.Optimizer) -> str:
    return f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"  # both AdamWs are called AdamW


def save_state(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """The AdamW moments and step counts, with the optimizer's class and each parameter's shape so that a later
    fit can check it continues the same model with the same update rule."""
    shapes = [list(p.shape) for group in optimizer.param_groups for p in group["params"]]
    atomic_write(path, lambda tmp: torch.save({"optimizer": _name(optimizer), "state_dict":
                                               optimizer.state_dict(), "shapes": shapes}, tmp))


def load_state(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Put the saved moments and step counts into `optimizer` (built for this fit: its learning rate, betas and
    weight decay stay). Refuses a state of another model or another optimizer."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no optimizer state to continue from (optim.continue_state=true needs the "
                                "base model's fit to have run with optim.keep_state=true)")
    saved = torch.load(path, map_location="cpu")
    shapes = [list(p.shape) for group in optimizer.param_groups for p in group["params"]]
    if saved["shapes"] != shapes:
        raise ValueError(f"{path}: the saved optimizer state belongs to another model ({len(saved['shapes'])} "
                         f"parameters, this model has {len(shapes)} or other shapes)")
    if saved["optimizer"] != _name(optimizer):
        raise ValueError(f"{path}: saved by {saved['optimizer']}, this fit uses {_name(optimizer)} "
                         "(trainer.precision decides: bf16 weights train with torch-optimi's AdamW)")
    current = optimizer.state_dict()
    groups = [{**{k: v for k, v in old.items() if k not in _HYPERPARAMETERS},
               **{k: v for k, v in new.items() if k in _HYPERPARAMETERS}}
              for old, new in zip(saved["state_dict"]["param_groups"], current["param_groups"])]
    optimizer.load_state_dict({"state": saved["state_dict"]["state"], "param_groups": groups})
