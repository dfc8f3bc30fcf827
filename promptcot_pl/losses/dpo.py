"""Preference losses as pure functions of summed sequence log-probs (SPEC §5; no Lightning, no I/O).

With log-ratios  r_w = log π(y_w|x) − log π_ref(y_w|x),  r_l = log π(y_l|x) − log π_ref(y_l|x):

- sigmoid DPO (Rafailov et al. 2023):   −log σ(β (r_w − r_l))
- conservative DPO (label smoothing ε, Mitchell 2023):  −(1−ε) log σ(β (r_w − r_l)) − ε log σ(−β (r_w − r_l));
  ε = 0 is sigmoid DPO (TRL's "sigmoid" with `label_smoothing`)
- IPO (Azar et al. 2023, eq. 17):  (h − 1/(2β))²  with h = r_w/|y_w| − r_l/|y_l| — the log-ratios averaged per
  completion token, as TRL does (the IPO authors' normalisation, so β is comparable across lengths)
- RPO term (Pang et al. 2024): the chosen completions' NLL per token, added with weight α to any of the above.

The implicit rewards β·r (detached) give the metrics: rewards of chosen and rejected, their margin, and the
accuracy (share of pairs whose chosen reward is higher).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

LossType = Literal["sigmoid", "ipo"]


@dataclass
class PreferenceLoss:
    losses: torch.Tensor  # [B], one per pair
    chosen_rewards: torch.Tensor  # [B], β (log π − log π_ref) of chosen, detached
    rejected_rewards: torch.Tensor  # [B]


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, *, beta: float, loss_type: LossType = "sigmoid", label_smoothing: float = 0.0,
             chosen_tokens: torch.Tensor | None = None, rejected_tokens: torch.Tensor | None = None) -> PreferenceLoss:
    """Per-pair loss from summed log-probs (all shaped [B]). IPO needs the completions' token counts."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    match loss_type:
        case "sigmoid":
            margin = beta * (chosen_ratio - rejected_ratio)
            losses = -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
        case "ipo":
            if chosen_tokens is None or rejected_tokens is None:
                raise ValueError("IPO averages the log-ratios per token: pass chosen_tokens and rejected_tokens")
            h = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
            losses = (h - 1 / (2 * beta)) ** 2
        case _:
            raise ValueError(f"unknown loss_type {loss_type!r}; choose 'sigmoid' or 'ipo'")
    return PreferenceLoss(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def chosen_nll(policy_chosen: torch.Tensor, chosen_tokens: torch.Tensor) -> torch.Tensor:
    """The RPO term: NLL per token over all chosen completions of the batch."""
    return -policy_chosen.sum() / chosen_tokens.sum().clamp(min=1)


def pair_summary(ref: torch.Tensor, policy: torch.Tensor, tokens: torch.Tensor, beta: float) -> dict[str, float]:
    """What a fit did to its pairs, from [n, 2] (chosen, rejected) summed log-probs before (`ref`) and after
    (`policy`) and their token counts: the mean log-probs after (TRL's logps/chosen, /rejected) and their change
    (both falling: likelihood displacement), the mean log-ratio per token, the implicit reward margin and the
    share of pairs whose chosen completion gained more than its rejected one."""
    ratio = policy - ref
    margin = beta * (ratio[:, 0] - ratio[:, 1])
    per_token = ratio / tokens.clamp(min=1)
    return {"logps_chosen": policy[:, 0].mean().item(), "logps_rejected": policy[:, 1].mean().item(),
            "logps_chosen_change": ratio[:, 0].mean().item(), "logps_rejected_change": ratio[:, 1].mean().item(),
            "logratio_per_token_chosen": per_token[:, 0].mean().item(),
            "logratio_per_token_rejected": per_token[:, 1].mean().item(),
            "rewards_margin": margin.mean().item(), "rewards_accuracy": (margin > 0).double().mean().item()}
