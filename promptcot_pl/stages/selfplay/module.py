"""Direct preference optimisation of a causal LM on prefix-shared (prompt, chosen, rejected) rows.

Chosen and rejected are scored in one forward pass over rows that hold the prompt once (`stages/selfplay/data.py`).
The reference log-probs either come with the batch (computed once per round by a batched no-grad pass, so only
the policy sits in memory while training) or from a frozen reference model held by the module; both give the
same loss on the same batch (tested). The loss is a pure function (`losses/dpo.py`); the module does no I/O and
no generation. Metrics (`PAIR_METRICS`, per step and as epoch means `…/epoch/…`): `train/loss`, the implicit rewards of chosen and
rejected, their margin and accuracy, the policy's log-probs of chosen and rejected, and the per-token log-ratios.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from transformers import PreTrainedModel

from promptcot_pl.config import OptimConfig
from promptcot_pl.losses import owner_sums
from promptcot_pl.losses.dpo import chosen_nll, dpo_loss
from promptcot_pl.models.head import DEFAULT_CHUNK_MIB, target_logprobs
from promptcot_pl.modules.optim import adamw_with_schedule
from promptcot_pl.modules.reduce import global_mean, global_sum
from promptcot_pl.stages.selfplay.config import DPOConfig

# per pair, averaged over the batch's real pairs: implicit rewards β·(log π − log π_ref) of chosen and rejected, the
# share of pairs whose chosen reward is higher, the policy's own summed log-probs (TRL's logps/chosen, /rejected:
# both falling is likelihood displacement) and the log-ratios per completion token
PAIR_METRICS = ("rewards_chosen", "rewards_rejected", "rewards_accuracy", "logps_chosen", "logps_rejected",
                "logratio_per_token_chosen", "logratio_per_token_rejected")


def pair_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                  chunk_mib: int = DEFAULT_CHUNK_MIB) -> tuple[torch.Tensor, ...]:
    """(chosen log-prob, rejected log-prob, chosen tokens, rejected tokens), each [B], summed over completions.
    The LM head runs on completion positions only, in chunks (`models/head.py`)."""
    logp = target_logprobs(model, batch, batch["score_row"], batch["score_pos"], batch["score_label"], chunk_mib)
    sums, counts = owner_sums(logp, batch["score_owner"], len(batch["index"]))
    return sums[0::2], sums[1::2], counts[0::2], counts[1::2]


class DPOModule(L.LightningModule):
    def __init__(self, model: PreTrainedModel, optim: OptimConfig, dpo: DPOConfig,
                 ref_model: PreTrainedModel | None = None, chunk_mib: int = DEFAULT_CHUNK_MIB,
                 optimizer_state: Path | None = None) -> None:
        super().__init__()
        self.optimizer_state = optimizer_state  # continue these AdamW moments (modules/optim.py)
        self.chunk_mib = chunk_mib
        # Eval mode turns off every dropout, attention dropout included (HF attention reads `self.training`);
        # Lightning keeps submodule modes through the fit. from_pretrained returns eval mode, so train mode is explicit.
        self.model = model.eval() if dpo.disable_dropout else model.train()
        self.optim, self.dpo = optim, dpo
        self.ref_model = ref_model
        if ref_model is not None:
            ref_model.eval().requires_grad_(False)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        policy_chosen, policy_rejected, chosen_tokens, rejected_tokens = pair_logprobs(self.model, batch, self.chunk_mib)
        if "ref_chosen" in batch:
            ref_chosen, ref_rejected = batch["ref_chosen"], batch["ref_rejected"]
        elif self.ref_model is not None:
            with torch.no_grad():
                ref_chosen, ref_rejected, _, _ = pair_logprobs(self.ref_model, batch, self.chunk_mib)
        else:
            raise ValueError("DPO needs reference log-probs: precompute them into the batch or give a ref_model")
        out = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=self.dpo.beta,
                       loss_type=self.dpo.loss, label_smoothing=self.dpo.label_smoothing,
                       chosen_tokens=chosen_tokens, rejected_tokens=rejected_tokens)
        # padding rows (a global batch with fewer pairs than ranks) count for nothing; see data/sharding.py
        real = batch["real"].to(out.losses.dtype) if "real" in batch else torch.ones_like(out.losses)
        # the accumulation window's (pairs, chosen tokens) over every rank (PreferenceDataModule)
        window = batch.get("window_count")
        pairs_window, tokens_window = (None, None) if window is None else (window[0], window[1])
        loss, mean = global_mean(self, (out.losses * real).sum(), real.sum(), pairs_window)
        if self.dpo.rpo_weight:
            tokens = (chosen_tokens * real).sum()
            nll, nll_mean = global_mean(self, chosen_nll(policy_chosen * real, tokens) * tokens, tokens, tokens_window)
            loss, mean = loss + self.dpo.rpo_weight * nll, mean + self.dpo.rpo_weight * nll_mean
        # statistics over the global batch: a rank holding only a padding row adds nothing (no NaN)
        per_token = [(policy_chosen - ref_chosen) / chosen_tokens.clamp(min=1),
                     (policy_rejected - ref_rejected) / rejected_tokens.clamp(min=1)]
        columns = torch.stack([out.chosen_rewards, out.rejected_rewards, (out.chosen_rewards > out.rejected_rewards)
                               .to(real.dtype), policy_chosen.detach(), policy_rejected.detach(),
                               per_token[0].detach(), per_token[1].detach()])
        sums = global_sum(torch.cat([torch.where(real > 0, columns, 0.0).sum(dim=1), real.sum()[None]]))
        means = dict(zip(PAIR_METRICS, sums[:-1] / sums[-1].clamp(min=1)))
        return loss, {"loss": mean, **means, "rewards_margin": means["rewards_chosen"] - means["rewards_rejected"]}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, metrics = self.loss(batch)
        metrics = {"train/loss": metrics.pop("loss"), **{f"selfplay/{k}": v for k, v in metrics.items()}}
        self.log("train/loss", metrics["train/loss"], prog_bar=True, batch_size=1)
        # global values already: per step under their names, and as the epoch's means under `…/epoch/…` (one
        # step's batch says little; the round reports the last epoch's means)
        self.log_dict({k: v for k, v in metrics.items() if k != "train/loss"}, batch_size=1)
        self.log_dict({k.replace("/", "/epoch/", 1): v for k, v in metrics.items()}, batch_size=1, on_step=False,
                      on_epoch=True)
        return loss

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, int(self.trainer.estimated_stepping_batches),
                                   self.optimizer_state)
