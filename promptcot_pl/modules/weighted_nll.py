"""The one likelihood objective of the pipeline: weighted NLL of a causal LM's target tokens,
Σ_b w_b·NLL_b / Σ_b w_b·n_b over the (global, accumulated) batch (tests/reference.py's `weighted_nll` is the full-logit form it is tested against).

One LightningModule serves every maximum-likelihood fit: the cold start (q_φ and p_θ), the solver,
the SFT student (w = 1), the E-step (w = the selection weights of the K rationales: one-hot for `best`) and the
M-step (w = 1). Batches without a `weight` field count every target token once. The module does no I/O and no
generation and no accounting (tokens and padding are counted once, by `accounting.TokenAccounting`): it computes
the loss, logs `<loss_name>` (e.g. `train/loss`, `em/e_loss`) and `val/nll` on a validation set, and builds its
optimizer. Every tensor it makes is made on its inputs' device (tests/test_device_clean.py).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from transformers import PreTrainedModel

from promptcot_pl.config import OptimConfig
from promptcot_pl.models.head import DEFAULT_CHUNK_MIB, labelled_logprobs
from promptcot_pl.modules.optim import adamw_with_schedule
from promptcot_pl.modules.reduce import global_mean


class WeightedNLLModule(L.LightningModule):
    def __init__(self, model: PreTrainedModel, optim: OptimConfig, chunk_mib: int = DEFAULT_CHUNK_MIB,
                 loss_name: str = "train/loss", optimizer_state: Path | None = None) -> None:
        super().__init__()
        self.optimizer_state = optimizer_state  # continue these AdamW moments (modules/optim.py)
        self.chunk_mib = chunk_mib  # LM-head chunk: no [tokens, vocabulary] logits (models/head.py)
        # from_pretrained returns eval mode and Lightning keeps submodule modes: train mode (dropout) is explicit.
        self.model = model.train()
        self.optim, self.loss_name = optim, loss_name

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ w·NLL over the batch's target tokens, Σ w over them); w = the token's row weight, or 1."""
        logp, rows = labelled_logprobs(self.model, batch, self.chunk_mib)
        if "weight" in batch:
            w = batch["weight"].to(logp.dtype)[rows]
            return -(w * logp).sum(), w.sum()
        return -logp.sum(), logp.new_tensor(float(logp.numel()))  # fp32 even where the default dtype is bf16

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        total, n_tokens = self(batch)
        loss, mean = global_mean(self, total, n_tokens, batch.get("window_count"))
        self.log(self.loss_name, mean, prog_bar=True, batch_size=1)
        return loss

    # Held-out NLL per token = Σ NLL / Σ tokens over the whole validation set (all ranks), summed exactly here:
    # Lightning's own epoch mean with sync_dist averages an integer batch-size count and rounds it. The sums stay
    # on the device (fp64; MPS has none, fp32 there) and are read once, at the epoch's end.
    def on_validation_epoch_start(self) -> None:
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._val_sums = torch.zeros(2, dtype=dtype, device=self.device)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        total, n_tokens = self(batch)
        self._val_sums += torch.stack([total.detach(), n_tokens]).to(self._val_sums.dtype)

    def on_validation_epoch_end(self) -> None:
        total, tokens = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum").tolist()
        self.log("val/nll", total / max(tokens, 1.0), prog_bar=True, sync_dist=True)  # equal on every rank

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, int(self.trainer.estimated_stepping_batches),
                                   self.optimizer_state)
