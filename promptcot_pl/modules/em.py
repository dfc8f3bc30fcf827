"""LightningModules of the EM loop (SPEC §3). Outer loops live in `recipes/em.py`; these only compute losses.

- `RationaleScorer`: no-grad `predict_step` → summed target log-prob and target token count per target, so the K
  candidates of many pairs are scored in batched forward passes under the Trainer's strategy — from padded
  batches (one target per row) or prefix-shared rows (a prompt once, then its targets; `data/shared_prefix.py`).
- `EStepModule`: fits q_φ on (c, x) → z_k with per-candidate weights (one-hot for `best`): weighted NLL.
- `MStepModule`: fits p_θ on c → (z̃, x): NLL on the target tokens.
"""

from __future__ import annotations

import inspect

import lightning as L
import torch
from transformers import PreTrainedModel

from promptcot_pl.config.schema import OptimConfig
from promptcot_pl.losses import gathered_sequence_logprobs, masked_nll, sequence_logprobs, weighted_nll
from promptcot_pl.modules.optim import adamw_with_schedule
from promptcot_pl.modules.reduce import global_mean


def _logits(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                 position_ids=batch.get("position_ids"), use_cache=False).logits


class RationaleScorer(L.LightningModule):
    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model.eval()
        self._slices_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        if "score_owner" in batch:
            return self._score_shared_prefix(batch)
        logits = _logits(self.model, batch)
        tokens = (batch["labels"][:, 1:] != -100).sum(dim=1)
        return {"index": batch["index"], "logprob": sequence_logprobs(logits, batch["labels"]), "tokens": tokens}

    def _score_shared_prefix(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # The LM head runs only from the first scored position on (prompt positions are never scored): with a
        # real vocabulary (150k for Qwen) the head is a large share of the forward pass.
        first, keep = 0, {}
        if self._slices_logits:
            first = int(batch["score_pos"].min())
            keep["logits_to_keep"] = torch.arange(first, batch["input_ids"].shape[1], device=self.device)
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            position_ids=batch["position_ids"], use_cache=False, **keep).logits
        logprob, tokens = gathered_sequence_logprobs(logits, batch["score_row"], batch["score_pos"] - first,
                                                     batch["score_label"], batch["score_owner"], len(batch["index"]))
        return {"index": batch["index"], "logprob": logprob, "tokens": tokens}


class EStepModule(L.LightningModule):
    def __init__(self, model: PreTrainedModel, optim: OptimConfig) -> None:
        super().__init__()
        self.model, self.optim = model.train(), optim

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, weight = weighted_nll(_logits(self.model, batch), batch["labels"], batch["weight"])
        loss, mean = global_mean(self, loss * weight, weight, batch.get("window_count"))
        self.log("em/e_loss", mean, prog_bar=True, batch_size=1)
        return loss

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, int(self.trainer.estimated_stepping_batches))


class MStepModule(L.LightningModule):
    def __init__(self, model: PreTrainedModel, optim: OptimConfig) -> None:
        super().__init__()
        self.model, self.optim = model.train(), optim

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, n_tokens = masked_nll(_logits(self.model, batch), batch["labels"])
        loss, mean = global_mean(self, loss * n_tokens, n_tokens, batch.get("window_count"))
        self.log("em/m_loss", mean, prog_bar=True, batch_size=1)
        return loss

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, int(self.trainer.estimated_stepping_batches))
