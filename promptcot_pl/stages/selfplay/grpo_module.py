"""GRPO as a LightningModule: one optimizer step on a generation batch the `OnlineRollouts` callback built
(`stages/selfplay/online.py`: the engine's rollouts of the current policy, their rewards and group-relative
advantages), with the loss of `losses/grpo.py`.

The batch holds prefix-shared rows (a problem's prompt once, then its rollouts: `data/shared_prefix.py`), so the
policy's log-probs of every completion token come from the fits' one floor (`models/head.target_logprobs`,
chunked LM head). Per completion token it also carries the advantage, π_old's log-prob (absent when the step is
the first on its batch: then π_old is π_θ, detached), the truncated importance weight, and the batch's global token
count that normalises the loss. The module does no generation and no I/O.

Logged per step (`selfplay/grpo/…`): the loss; clip fractions below and above; the sampled tokens' mean negative log-prob
(an estimate of the policy's entropy at temperature 1); the KL to the reference when β > 0; and the generation
batch's statistics the callback measured (reward mean and std, pass rate, zero-variance share, lengths, truncation,
the engine-vs-trainer log-prob gap, the probe check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from transformers import PreTrainedModel

from promptcot_pl.config import OptimConfig
from promptcot_pl.losses.grpo import grpo_loss
from promptcot_pl.models.head import DEFAULT_CHUNK_MIB, target_logprobs
from promptcot_pl.modules.optim import adamw_with_schedule
from promptcot_pl.modules.reduce import global_sum
from promptcot_pl.stages.selfplay.config import GRPOConfig


def completion_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                        chunk_mib: int = DEFAULT_CHUNK_MIB) -> torch.Tensor:
    """log π(token) of every completion token of the batch, in the batch's scoring order, [N] fp32."""
    return target_logprobs(model, batch, batch["score_row"], batch["score_pos"], batch["score_label"], chunk_mib)


class GRPOModule(L.LightningModule):
    def __init__(self, model: PreTrainedModel, optim: OptimConfig, grpo: GRPOConfig,
                 ref_model: PreTrainedModel | None = None, chunk_mib: int = DEFAULT_CHUNK_MIB,
                 optimizer_state: Path | None = None) -> None:
        super().__init__()
        # dropout off, as for DPO (TRL's default): the ratio ρ compares the policy with itself, not two dropout masks
        self.model = model.eval()
        self.optim, self.grpo, self.chunk_mib, self.optimizer_state = optim, grpo, chunk_mib, optimizer_state
        self.ref_model = ref_model
        if ref_model is not None:
            ref_model.eval().requires_grad_(False)

    @torch.no_grad()
    def score(self, batch: dict[str, torch.Tensor], reference: bool = False) -> torch.Tensor:
        """No-grad log-probs of the batch's completion tokens under the policy (π_old when called before the
        batch's first step) or the reference."""
        model = self.ref_model if reference and self.ref_model is not None else self.model
        return completion_logprobs(model, batch, self.chunk_mib).detach()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logps = completion_logprobs(self.model, batch, self.chunk_mib)
        old = batch.get("old_logps")
        old = logps.detach() if old is None else old
        ref = None
        if self.grpo.beta:
            ref = batch["ref_logps"] if "ref_logps" in batch else self.score(batch, reference=True)
        out = grpo_loss(logps, old, batch["token_advantages"], eps_low=self.grpo.eps_low, eps_high=self.grpo.eps_high,
                        normaliser=batch["normaliser"], is_weights=batch.get("is_weights"), ref_logps=ref,
                        beta=self.grpo.beta, mask=batch["token_real"])
        world = self.trainer.world_size if self._trainer is not None else 1
        # every rank holds its share of the generation batch and divides by the batch's global token count; DDP
        # averages gradients over ranks, so × world gives the gradient of Σ over the whole batch / its tokens
        loss = out.loss * world
        tokens = batch["normaliser"].to(logps.dtype)
        sums = global_sum(torch.stack([out.loss.detach(), out.clipped_low, out.clipped_high, out.kl,
                                       -(logps.detach() * batch["token_real"]).sum()]))
        metrics = {"train/loss": sums[0], "selfplay/grpo/clip_low_fraction": sums[1] / tokens,
                   "selfplay/grpo/clip_high_fraction": sums[2] / tokens,
                   "selfplay/grpo/entropy_sampled": sums[4] / tokens}
        if self.grpo.beta:
            metrics["selfplay/grpo/kl"] = sums[3] / tokens
        metrics |= {f"selfplay/grpo/{k}": v for k, v in batch["stats"].items()}
        self.log("train/loss", metrics["train/loss"], prog_bar=True, batch_size=1)
        # per step only: Lightning's epoch means restart at a mid-epoch resume; the round's summary is taken from
        # its generation batches on disk instead (`grpo_fit.summary`)
        self.log_dict({k: v for k, v in metrics.items() if k != "train/loss"}, batch_size=1)
        return loss

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, int(self.trainer.estimated_stepping_batches),
                                   self.optimizer_state)
