"""Reference implementations the tests (and `bench/memory.py`, as its naive baseline) check the package against:
log-probs and NLLs from a full `[B, T, vocabulary]` logit matrix — what the package's chunked head
(`models/head.py`) computes without that matrix — and the reward of a single completion.

Labels follow the Hugging Face convention: position t's label is the token at t, -100 where no loss is taken;
logits at t predict the token at t+1, so both are shifted by one here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptcot_pl.data.collate import IGNORE
from promptcot_pl.losses.logprobs import owner_sums
from promptcot_pl.verify.rewards import Rewards, Target


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(label_t | <t) for t ≥ 1, mask of scored positions); both shaped [B, T-1], zeros where masked."""
    shifted_labels = labels[:, 1:]
    mask = shifted_labels != IGNORE
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), shifted_labels, ignore_index=IGNORE,
                          reduction="none")
    return -nll * mask, mask


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed target log-prob per sequence, shape [B] (not length-normalised)."""
    return token_logprobs(logits, labels)[0].sum(dim=1)


def gathered_sequence_logprobs(logits: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor,
                               labels: torch.Tensor, owners: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob, token count) of `n` targets whose tokens `labels` are predicted at logits[rows, positions]
    and belong to target `owners` — the layout of prefix-shared rows (`data/shared_prefix.py`)."""
    return owner_sums(-F.cross_entropy(logits[rows, positions].float(), labels, reduction="none"), owners, n)


def masked_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean NLL over every target token in the batch, number of target tokens)."""
    logp, mask = token_logprobs(logits, labels)
    n_tokens = mask.sum()
    return -logp.sum() / n_tokens.clamp(min=1), n_tokens


def weighted_nll(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_b w_b·NLL_b / Σ_b w_b·n_b, the weighted token count): a token mean in which sequence b counts w_b times."""
    logp, mask = token_logprobs(logits, labels)
    w = weights.to(logp.dtype)
    denominator = (w * mask.sum(dim=1)).sum()
    return -(w * logp.sum(dim=1)).sum() / denominator.clamp(min=1e-8), denominator


def reward(completion: str, problem: Target, timeout_s: float = 30.0) -> float | None:
    """One completion's reward: `Rewards.score` for a batch of one."""
    return Rewards(code_timeout_s=timeout_s).score([completion], [problem])[0]
