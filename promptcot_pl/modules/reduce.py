"""Losses normalised by the *global* batch, so N processes train exactly like one.

DDP and FSDP average gradients over ranks. If each rank returned its own mean (sum / its count), the result
would be a mean of rank means, which differs from the single-process mean whenever ranks hold different numbers
of target tokens (or pairs). Dividing each rank's sum by the global count and multiplying by the world size makes
the averaged gradient equal the single-process gradient of sum / global count. One all-reduce of two scalars per
step, queued on the device without a host sync (`distributed.all_reduce_sum`); on one process nothing is
communicated.
"""

from __future__ import annotations

import lightning as L
import torch

from promptcot_pl.distributed import all_reduce_sum


def global_mean(module: L.LightningModule, total: torch.Tensor, count: torch.Tensor,
                window_count: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to backpropagate, the global mean of this micro-batch for logging — the same value on every rank).
    `total` is this rank's summed loss (with grad), `count` what it sums over (tokens, pairs, weights).

    With `window_count` — the count of the whole gradient-accumulation window over every rank (`data/sharding.py`)
    — the loss is total / window_count, times the world size (DDP averages over ranks) and times A (Lightning
    divides by accumulate_grad_batches): the step's gradient is Σ loss / Σ count over the window."""
    trainer = module._trainer  # None when called outside a fit (tests, scripts): one process
    world = trainer.world_size if trainer is not None else 1
    if trainer is None or world == 1:
        mean = total / count.clamp(min=1e-8)
    else:
        both = all_reduce_sum(torch.stack([total.detach().float(), count.detach().float()]))
        mean = both[0] / both[1].clamp(min=1e-8)
        if window_count is None:
            return total / both[1].clamp(min=1e-8) * world, mean
    if window_count is None:
        return mean, mean.detach()
    accumulation = trainer.accumulate_grad_batches if trainer is not None else 1
    loss = total / window_count.to(total.dtype).clamp(min=1e-8) * (world * accumulation)
    return loss, mean.detach()


def global_sum(values: torch.Tensor) -> torch.Tensor:
    """`values` (detached) summed over every rank of a multi-process fit: metrics of the global batch."""
    return all_reduce_sum(values.detach().float())
