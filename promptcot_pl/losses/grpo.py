"""Group-relative policy optimisation from verifiable rewards, as pure functions (no Lightning, no I/O).

GRPO (Shao et al. 2024) with the choices TRL's `GRPOTrainer` makes by default and DAPO (Yu et al. 2025) argued for:

- advantages: each rollout's reward minus its group's mean (the G rollouts of one problem), divided by the
  group's standard deviation + 1e-4 when `scale` (TRL's `scale_rewards="group"`; Dr. GRPO turns it off). A group
  whose rewards are all equal has advantage 0 everywhere: it contributes no gradient;
- a PPO-style clipped surrogate per completion token with separate bounds: −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A),
  ρ = π_θ(token) / π_old(token);
- an optional truncated importance-sampling weight per token, min(π_old / π_engine, cap), for the drift between the
  engine that sampled and the trainer (TRL's `vllm_importance_sampling_correction` with mode "token_truncate"; TRL's
  default mode masks whole sequences, cap 3);
- an optional KL term β·(e^{ref−θ} − (ref−θ) − 1) per token (the k3 estimator; β = 0 by default, as in TRL),
  weighted by ρ (`kl_bias_correction`, TRL's `use_bias_correction_kl`, on by default there too): the tokens were
  sampled from π_old, not π_θ;
- token-level aggregation over the whole generation batch (DAPO's `loss_type="dapo"`): the summed per-token loss
  divided by the batch's completion tokens, so long and short completions weigh per token alike.

Every tensor is flat over the batch's completion tokens ([N]); `tests/test_grpo_loss.py` checks the loss and its
gradients against TRL's `GRPOTrainer._compute_loss` on the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """[n_groups · G] rewards (groups contiguous) → advantages of the same shape."""
    groups = rewards.view(-1, group_size).float()
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:  # torch's std is the unbiased one, as TRL's
        centred = centred / (groups.std(dim=1, keepdim=True) + 1e-4)
    return centred.reshape(-1)


def zero_variance(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[n_groups] bool: the groups whose rewards are all equal (no learning signal)."""
    groups = rewards.view(-1, group_size)
    return (groups == groups[:, :1]).all(dim=1)


def truncated_is_weights(old_logps: torch.Tensor, sampling_logps: torch.Tensor, cap: float) -> torch.Tensor:
    """min(π_old / π_engine, cap) per token, detached: the engine sampled from π_engine, the loss assumes π_old."""
    # a token the engine gave no log-prob for (NaN) is taken as sampled from π_old: weight 1
    return torch.exp(old_logps - sampling_logps).clamp(max=cap).nan_to_num(nan=1.0).detach()


@dataclass
class GRPOLoss:
    loss: torch.Tensor  # scalar: Σ per-token loss / normaliser
    clipped_low: torch.Tensor  # scalar: tokens whose ratio was clipped below (A < 0), summed (detached)
    clipped_high: torch.Tensor  # scalar: tokens clipped above (A > 0), summed (detached)
    kl: torch.Tensor  # scalar: the k3 KL summed over tokens (0 without a reference; detached)


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, *, eps_low: float,
              eps_high: float, normaliser: torch.Tensor | float, is_weights: torch.Tensor | None = None,
              ref_logps: torch.Tensor | None = None, beta: float = 0.0, kl_bias_correction: bool = True,
              mask: torch.Tensor | None = None) -> GRPOLoss:
    """The clipped surrogate summed over the N completion tokens given, divided by `normaliser` (the generation
    batch's completion tokens over every rank). `logps` carries the gradient; the others are constants. `mask`
    (0/1 per token) leaves tokens out entirely, the KL term too (a rank's stand-in group that keeps DDP in step)."""
    ratio = torch.exp(logps - old_logps)
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    if is_weights is not None:
        per_token = per_token * is_weights
    kl = torch.zeros((), dtype=logps.dtype, device=logps.device)
    if beta:
        if ref_logps is None:
            raise ValueError("a KL term (beta > 0) needs the reference's log-probs")
        gap = ref_logps - logps
        per_token_kl = torch.exp(gap) - gap - 1
        if kl_bias_correction:
            per_token_kl = per_token_kl * ratio
        per_token = per_token + beta * per_token_kl
        kl = per_token_kl.detach().sum()
    if mask is not None:
        per_token = per_token * mask
        kl = kl * 0 if not beta else (per_token_kl.detach() * mask).sum()
    low = ((ratio < 1 - eps_low) & (advantages < 0)).sum().detach()
    high = ((ratio > 1 + eps_high) & (advantages > 0)).sum().detach()
    return GRPOLoss(per_token.sum() / normaliser, low.to(logps.dtype), high.to(logps.dtype), kl)
