"""Pure functions of the EM loop (SPEC §2–3): rationale selection weights, weighted NLL, IWAE bound and ELBO.

Shapes: scores are [N, K] — N (c, x) pairs, K sampled rationales each.
- `log_p_joint[n, k]` = R = log p_θ(z_k, x | c), the summed target log-prob under the prompt model.
- `log_q[n, k]`       = log q_φ(z_k | c, x), under the rationale model.
- `valid[n, k]`       = whether candidate k can be scored at all (optional): a sample cut at the token limit or
  holding the markers has no density under p_θ to compare. Such a candidate weighs 0 — in the
  E-step and in the bound. Weighting a proposal's samples outside a subset S by 0 still bounds log p(x | c) from
  below (by log Σ_{z∈S} p(z, x | c)), so the held-out numbers stay bounds.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Selection = Literal["best", "softmax"]


def em_weights(log_p_joint: torch.Tensor, log_q: torch.Tensor, *, selection: Selection = "best", tau: float = 1.0,
               beta: float = 0.0, p_tokens: torch.Tensor | None = None,
               q_tokens: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Weights over the K candidates of each pair (rows sum to 1; a row without a valid candidate is all 0).

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
    valid = torch.ones_like(reward, dtype=torch.bool) if valid is None else valid.bool()
    match selection:
        case "best":
            weights = F.one_hot(reward.masked_fill(~valid, -math.inf).argmax(dim=1), reward.shape[1]).double()
        case "softmax":
            if tau <= 0:
                raise ValueError("tau must be > 0 (use selection='best' for the τ → 0 limit)")
            logits = ((reward - beta * proposal) / tau).masked_fill(~valid, -math.inf)
            weights = torch.softmax(logits, dim=1).nan_to_num(0.0)  # an all-invalid row: NaN → 0
        case _:
            raise ValueError(f"selection {selection!r}: expected 'best' or 'softmax'")
    return (weights * valid).to(log_p_joint.dtype)


def _log_weights(log_p_joint: torch.Tensor, log_q: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    log_w = log_p_joint.double() - log_q.double()
    return log_w if valid is None else log_w.masked_fill(~valid.bool(), -math.inf)


def iwae_bound(log_p_joint: torch.Tensor, log_q: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """log (1/K) Σ_k w_k, w_k = exp(log p(z_k, x | c) − log q(z_k | c, x)) and 0 for an invalid candidate, per pair,
    shape [N] (K = last dimension); −inf for a pair without a valid candidate.

    A lower bound on log p(x | c) in expectation only when the z_k are drawn from the very q that is scored:
    temperature 1, no top-p/top-k, and log q of the sampled token ids."""
    k = log_p_joint.shape[-1]
    return torch.logsumexp(_log_weights(log_p_joint, log_q, valid), dim=-1) - math.log(k)


def elbo_estimate(log_p_joint: torch.Tensor, log_q: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Monte-Carlo ELBO per pair: mean_k [log p(z_k, x | c) − log q(z_k | c, x)], shape [N].

    With `valid`: the ELBO of q restricted to valid rationales, q' = q·1[valid] / P_q(valid): the mean over the
    valid candidates plus log(#valid / K) (the estimate of log P_q(valid)); −inf for a pair without one."""
    if valid is None:
        return (log_p_joint.double() - log_q.double()).mean(dim=-1)
    valid = valid.bool()
    n = valid.sum(dim=-1)
    log_w = (log_p_joint.double() - log_q.double()).masked_fill(~valid, 0.0)
    mean = log_w.sum(dim=-1) / n.clamp(min=1) + torch.log(n.double() / valid.shape[-1])
    return mean.masked_fill(n == 0, -math.inf)
