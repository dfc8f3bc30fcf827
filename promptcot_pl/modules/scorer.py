"""`SequenceScorer`: no-grad `predict_step` → summed target log-prob and target token count per target, so many
sequences are scored in batched forward passes under the Trainer's strategy (`runner/scoring.py`): EM's K
rationale candidates under q_φ and p_θ, and self-play's reference log-probs. Batches are padded (one target per
row) or prefix-shared rows (a prompt once, then its targets; `data/shared_prefix.py`)."""

from __future__ import annotations

import lightning as L
import torch
from transformers import PreTrainedModel

from promptcot_pl.losses import owner_sums
from promptcot_pl.models.head import DEFAULT_CHUNK_MIB, labelled_logprobs, target_logprobs


class SequenceScorer(L.LightningModule):
    def __init__(self, model: PreTrainedModel, chunk_mib: int = DEFAULT_CHUNK_MIB) -> None:
        super().__init__()
        self.model, self.chunk_mib = model.eval(), chunk_mib

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        # The LM head runs on scored positions only (prompts are never scored; with a 150k vocabulary the head is
        # a large share of the pass), in chunks: no [tokens, vocabulary] logits.
        if "score_owner" in batch:  # prefix-shared rows
            logp = target_logprobs(self.model, batch, batch["score_row"], batch["score_pos"], batch["score_label"],
                                   self.chunk_mib)
            logprob, tokens = owner_sums(logp, batch["score_owner"], len(batch["index"]))
        else:
            logp, rows = labelled_logprobs(self.model, batch, self.chunk_mib)
            logprob, tokens = owner_sums(logp, rows, len(batch["index"]))
        return {"index": batch["index"], "logprob": logprob, "tokens": tokens}
