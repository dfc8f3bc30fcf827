"""LightningModules of the EM loop (SPEC §3). Outer loops live in `recipes/em.py`; these only compute losses.

- `RationaleScorer`: no-grad `predict_step` → summed target log-prob and target token count per target, so the K
  candidates of many pairs are scored in batched forward passes under the Trainer's strategy — from padded
  batches (one target per row) or prefix-shared rows (a prompt once, then its targets; `data/shared_prefix.py`).
- `EStepModule`: fits q_φ on (c, x) → z_k with per-candidate weights (one-hot for `best`): weighted NLL.
- `MStepModule`: fits p_θ on c → (z̃, x): NLL on the target tokens.
"""

from __future__ import annotations

import lightning as L
import torch
from transformers import PreTrainedModel

from promptcot_pl.config.schema import OptimConfig
from promptcot_pl.modules.head import DEFAULT_CHUNK_MIB, labelled_logprobs, owner_sums, target_logprobs
from promptcot_pl.modules.optim import adamw_with_schedule
from promptcot_pl.modules.reduce import global_mean


class RationaleScorer(L.LightningModule):
    def __init__(self, model: PreTrainedModel, chunk_mib: int = DEFAULT_CHUNK_MIB) -> None:
        super().__init__()
        self.model, self.chunk_mib = model.eval(), chunk_mib

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        # The LM head runs on scored positions only (prompts are never scored; with a 150k vocabulary the head is
        # a large share of the pass), in chunks: no [tokens, vocabulary] logits (REVIEW C2).
        if "score_owner" in batch:  # prefix-shared rows
            logp = target_logprobs(self.model, batch, batch["score_row"], batch["score_pos"], batch["score_label"],
                                   self.chunk_mib)
            logprob, tokens = owner_sums(logp, batch["score_owner"], len(batch["index"]))
        else:
            logp, rows = labelled_logprobs(self.model, batch, self.chunk_mib)
            logprob, tokens = owner_sums(logp, rows, len(batch["index"]))
        return {"index": batch["index"], "logprob": logprob, "tokens": tokens}


class EStepModule(L.LightningModule):
    def __init__(self, model: PreTrainedModel, optim: OptimConfig, chunk_mib: int = DEFAULT_CHUNK_MIB) -> None:
        super().__init__()
        self.model, self.optim, self.chunk_mib = model.train(), optim, chunk_mib

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Σ_b w_b·NLL_b / Σ_b w_b·n_b (`losses.weighted_nll`), from per-token log-probs
        logp, rows = labelled_logprobs(self.model, batch, self.chunk_mib)
        w = batch["weight"].to(logp.dtype)[rows]
        loss, mean = global_mean(self, -(w * logp).sum(), w.sum(), batch.get("window_count"))
        self.log("em/e_loss", mean, prog_bar=True, batch_size=1)
        return loss

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, int(self.trainer.estimated_stepping_batches))


class MStepModule(L.LightningModule):
    def __init__(self, model: PreTrainedModel, optim: OptimConfig, chunk_mib: int = DEFAULT_CHUNK_MIB) -> None:
        super().__init__()
        self.model, self.optim, self.chunk_mib = model.train(), optim, chunk_mib

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logp, _ = labelled_logprobs(self.model, batch, self.chunk_mib)
        loss, mean = global_mean(self, -logp.sum(), torch.tensor(float(logp.numel()), device=logp.device),
                                 batch.get("window_count"))
        self.log("em/m_loss", mean, prog_bar=True, batch_size=1)
        return loss

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, int(self.trainer.estimated_stepping_batches))
