"""The optimizer every fitting module uses: AdamW (no decay on norms and biases) + a warmup/decay schedule;
torch-optimi's AdamW with Kahan summation when the weights are stored in bf16 (`trainer.precision=bf16-true`).

The decay groups are chosen by parameter *name* with transformers' own rule (`trainer_pt_utils.get_parameter_names`
with the patterns `transformers.Trainer` uses: LayerNorm layers and names holding "bias" or a "norm"), never by
`p.ndim`: FSDP flattens parameters into 1-D shards before `configure_optimizers` runs, so an ndim rule would put
every parameter in the no-decay group and weight decay would silently vanish (REVIEW M12). Wrapper prefixes
(FSDP, activation checkpointing, torch.compile) are removed from names before they are compared.
"""

from __future__ import annotations

import re

import torch
from transformers import get_scheduler
from transformers.trainer_pt_utils import get_parameter_names

from promptcot_pl.config import OptimConfig

NO_DECAY = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]  # transformers.Trainer's
_WRAPPERS = re.compile(r"(?:_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)\.")


def clean_name(name: str) -> str:
    return _WRAPPERS.sub("", name)


def parameter_groups(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """(names with weight decay, names without), trainable parameters only, in `named_parameters` order."""
    decayed = {clean_name(n) for n in get_parameter_names(model, [torch.nn.LayerNorm], NO_DECAY)}
    names = [clean_name(n) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n in names if n in decayed], [n for n in names if n not in decayed]


def adamw_with_schedule(model: torch.nn.Module, optim: OptimConfig, total_steps: int):
    """What `configure_optimizers` returns: AdamW + `transformers.get_scheduler`, stepped every optimizer step."""
    decay_names = set(parameter_groups(model)[0])
    trainable = [(clean_name(n), p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in trainable if n in decay_names], "weight_decay": optim.weight_decay},
              {"params": [p for n, p in trainable if n not in decay_names], "weight_decay": 0.0}]
    beta1, beta2 = optim.betas
    if any(p.dtype in (torch.bfloat16, torch.float16) for _, p in trainable):
        # half-precision weights (bf16-true, opted in at load): torch-optimi's AdamW with Kahan summation, which
        # carries each update's rounding error to the next step; plain AdamW would lose updates below bf16's
        # resolution (REVIEW C1). Same update rule otherwise (PyTorch's eps, lr-coupled decoupled decay).
        import optimi

        optimizer = optimi.AdamW(groups, lr=optim.lr, betas=(beta1, beta2), eps=1e-8, kahan_sum=True, foreach=False)
    else:
        optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=(beta1, beta2))
    scheduler = get_scheduler(optim.scheduler, optimizer, num_warmup_steps=int(optim.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
