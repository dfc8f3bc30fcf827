"""Pure functions of the EM loop (SPEC §2–3): rationale selection weights, weighted NLL, IWAE bound and ELBO.

Shapes: scores are [N, K] — N (c, x) pairs, K sampled rationales each.
- `log_p_joint[n, k]` = R = log p_θ(z_k, x | c), the summed target log-prob under the prompt model.
- `log_q[n, k]`       = log q_φ(z_k | c, x), under the rationale model.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from promptcot_pl.losses.logprobs import token_logprobs

Selection = Literal["best", "softmax"]


def em_weights(log_p_joint: torch.Tensor, log_q: torch.Tensor, *, selection: Selection = "best", tau: float = 1.0,
               beta: float = 0.0, p_tokens: torch.Tensor | None = None,
               q_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Weights over the K candidates of each pair (rows sum to 1).

    best:    one-hot on argmax_k R_k (the paper).
    softmax: w_k ∝ exp((R_k − β·log q_k) / τ). τ → 0 (β = 0) recovers best-of-K; β = 1, τ = 1 is self-normalised
             importance sampling of the posterior p_θ(z | c, x) with proposal q_φ.
    With `p_tokens`/`q_tokens` ([N, K] target token counts) each score is divided by its length first.
    """
    if log_p_joint.shape != log_q.shape or log_p_joint.dim() != 2:
        raise ValueError(f"expected two [N, K] tensors, got {tuple(log_p_joint.shape)} and {tuple(log_q.shape)}")
    reward, proposal = log_p_joint.double(), log_q.double()
    if p_tokens is not None:
        reward = reward / p_tokens.clamp(min=1)
    if q_tokens is not None:
        proposal = proposal / q_tokens.clamp(min=1)
    match selection:
        case "best":
            return F.one_hot(reward.argmax(dim=1), reward.shape[1]).to(log_p_joint.dtype)
        case "softmax":
            if tau <= 0:
                raise ValueError("tau must be > 0 (use selection='best' for the τ → 0 limit)")
            return torch.softmax((reward - beta * proposal) / tau, dim=1).to(log_p_joint.dtype)
    raise ValueError(f"selection {selection!r}: expected 'best' or 'softmax'")


def iwae_bound(log_p_joint: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k exp(log p(z_k, x | c) − log q(z_k | c, x)) per pair, shape [N] (K = last dimension)."""
    k = log_p_joint.shape[-1]
    return torch.logsumexp(log_p_joint.double() - log_q.double(), dim=-1) - math.log(k)


def elbo_estimate(log_p_joint: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo ELBO per pair: mean_k [log p(z_k, x | c) − log q(z_k | c, x)], shape [N]."""
    return (log_p_joint.double() - log_q.double()).mean(dim=-1)


def weighted_nll(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_b w_b·NLL_b / Σ_b w_b·n_b: a token mean in which sequence b counts w_b times (w = 1: plain masked NLL).

    Returns (loss, weighted token count)."""
    logp, mask = token_logprobs(logits, labels)
    w = weights.to(logp.dtype)
    denominator = (w * mask.sum(dim=1)).sum()
    return -(w * logp.sum(dim=1)).sum() / denominator.clamp(min=1e-8), denominator
