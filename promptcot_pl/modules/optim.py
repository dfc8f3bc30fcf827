"""The optimizer every fitting module uses: AdamW (no decay on norms and biases) + a warmup/decay schedule."""

from __future__ import annotations

import torch
from transformers import get_scheduler

from promptcot_pl.config.schema import OptimConfig


def adamw_with_schedule(model: torch.nn.Module, optim: OptimConfig, total_steps: int):
    """What `configure_optimizers` returns: AdamW + `transformers.get_scheduler`, stepped every optimizer step."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=optim.lr, betas=tuple(optim.betas))
    scheduler = get_scheduler(optim.scheduler, optimizer, num_warmup_steps=int(optim.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
