"""The one likelihood objective of the pipeline: weighted NLL of a causal LM's target tokens,
Σ_b w_b·NLL_b / Σ_b w_b·n_b over the (global, accumulated) batch (`losses.weighted_nll` is the pure form).

One LightningModule serves every maximum-likelihood fit (REVIEW m3): the cold start (q_φ and p_θ), the solver,
the SFT student (w = 1), the E-step (w = the selection weights of the K rationales: one-hot for `best`) and the
M-step (w = 1). Batches without a `weight` field count every target token once. The module does no I/O and no
generation: it computes the loss, logs `<loss_name>` (e.g. `train/loss`, `em/e_loss`), `train/padding_waste` for
packed rows and `val/nll` on a validation set, and builds its optimizer.
"""

from __future__ import annotations

import lightning as L
import torch
from transformers import PreTrainedModel

from promptcot_pl.config import OptimConfig
from promptcot_pl.models.head import DEFAULT_CHUNK_MIB, labelled_logprobs
from promptcot_pl.modules.optim import adamw_with_schedule
from promptcot_pl.modules.reduce import global_mean


class WeightedNLLModule(L.LightningModule):
    def __init__(self, model: PreTrainedModel, optim: OptimConfig, chunk_mib: int = DEFAULT_CHUNK_MIB,
                 loss_name: str = "train/loss") -> None:
        super().__init__()
        self.chunk_mib = chunk_mib  # LM-head chunk: no [tokens, vocabulary] logits (models/head.py)
        # from_pretrained returns eval mode and Lightning keeps submodule modes: train mode (dropout) is explicit.
        self.model = model.train()
        self.optim, self.loss_name = optim, loss_name
        # (real tokens, positions) of the packed rows over the whole fit, summed over the ranks: its padding waste
        self._seen = torch.zeros(2, dtype=torch.long)

    @property
    def padding_waste(self) -> float:
        real, positions = self._seen.tolist()
        return 1.0 - real / positions if positions else 0.0

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ w·NLL over the batch's target tokens, Σ w over them); w = the token's row weight, or 1."""
        logp, rows = labelled_logprobs(self.model, batch, self.chunk_mib)
        if "weight" in batch:
            w = batch["weight"].to(logp.dtype)[rows]
            return -(w * logp).sum(), w.sum()
        return -logp.sum(), torch.tensor(float(logp.numel()), device=logp.device)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        total, n_tokens = self(batch)
        loss, mean = global_mean(self, total, n_tokens, batch.get("window_count"))
        self.log(self.loss_name, mean, prog_bar=True, batch_size=1)
        if "real_tokens" in batch:  # share of the (global) batch's positions that hold padding, not tokens
            # Kept on the device (REVIEW m20): no host sync per step; the logger reads the values when it writes
            # (every log_every_n_steps) and the fit's total is read at its end. The sum over the ranks stays: it is
            # 3 numbers, asynchronous on GPUs, and it makes each step's value exact and every rank's total equal.
            # fp32 holds one batch's counts exactly (< 2**24); the fit's totals are integers (MPS has no fp64)
            counts = torch.stack([n_tokens.detach(), batch["real_tokens"], torch.tensor(batch["input_ids"].numel())])
            target, real, positions = self.trainer.strategy.reduce(counts.to(self.device, torch.float32),
                                                                      reduce_op="sum")
            self._seen = self._seen.to(self.device) + torch.stack([real, positions]).round().long()
            self.log("train/padding_waste", 1.0 - real / positions, batch_size=1)
            self.log("train/target_tokens", target, reduce_fx="sum", batch_size=1)
        return loss

    # The fit's padding totals go into its checkpoints, so a fit killed and resumed reports the whole fit's waste.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["padding_seen"] = self._seen.tolist()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._seen = torch.tensor(checkpoint.get("padding_seen", [0, 0]), dtype=torch.long)

    # Held-out NLL per token = Σ NLL / Σ tokens over the whole validation set (all ranks), summed exactly here:
    # Lightning's own epoch mean with sync_dist averages an integer batch-size count and rounds it.
    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(2, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        total, n_tokens = self(batch)
        self._val_sums += torch.stack([total.detach().double(), n_tokens.double()])

    def on_validation_epoch_end(self) -> None:
        total, tokens = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum").tolist()
        self.log("val/nll", total / max(tokens, 1.0), prog_bar=True, sync_dist=True)  # equal on every rank

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, int(self.trainer.estimated_stepping_batches))
