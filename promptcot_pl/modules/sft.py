"""Supervised fine-tuning of a causal LM on (prompt → target) batches: masked NLL on target tokens.

Used for the cold start (q_φ and p_θ), and later for the M-step and the SFT regime. The module does no I/O
and no generation: it computes the loss, logs `train/loss`, `train/padding_waste` and `val/nll`, and builds
its optimizer.
"""

from __future__ import annotations

import lightning as L
import torch
from transformers import PreTrainedModel

from promptcot_pl.config.schema import OptimConfig
from promptcot_pl.losses import masked_nll
from promptcot_pl.modules.optim import adamw_with_schedule
from promptcot_pl.modules.reduce import global_mean


class SFTModule(L.LightningModule):
    def __init__(self, model: PreTrainedModel, optim: OptimConfig) -> None:
        super().__init__()
        # from_pretrained returns eval mode and Lightning keeps submodule modes: train mode (dropout) is explicit.
        self.model = model.train()
        self.optim = optim
        self.tokens_seen = self.positions_seen = 0  # over the whole fit: its padding waste

    @property
    def padding_waste(self) -> float:
        return 1.0 - self.tokens_seen / self.positions_seen if self.positions_seen else 0.0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                          position_ids=batch.get("position_ids"), use_cache=False).logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, n_tokens = masked_nll(self(batch), batch["labels"])
        loss, mean = global_mean(self, loss * n_tokens, n_tokens)
        self.log("train/loss", mean, prog_bar=True, batch_size=1)
        self.log("train/target_tokens", n_tokens.float(), reduce_fx="sum", batch_size=1)
        if "real_tokens" in batch:  # share of the batch's positions that hold padding, not tokens
            real, positions = int(batch["real_tokens"]), batch["input_ids"].numel()
            self.tokens_seen, self.positions_seen = self.tokens_seen + real, self.positions_seen + positions
            self.log("train/padding_waste", 1.0 - real / positions, batch_size=1)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, n_tokens = masked_nll(self(batch), batch["labels"])
        # batch_size=n_tokens makes Lightning's epoch mean a token-weighted mean: exact held-out NLL per token.
        self.log("val/nll", loss, prog_bar=True, batch_size=int(n_tokens), sync_dist=True)

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, int(self.trainer.estimated_stepping_batches))
