"""Pure functions from logits and prompt-masked labels to token log-probs, sequence log-probs and NLL.

Labels follow the Hugging Face convention: position t's label is the token at t, -100 where no loss is taken;
logits at t predict the token at t+1, so both are shifted by one here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(label_t | <t) for t ≥ 1, mask of scored positions); both shaped [B, T-1], zeros where masked."""
    shifted_logits = logits[:, :-1].float()
    shifted_labels = labels[:, 1:]
    mask = shifted_labels != IGNORE
    # cross_entropy is fused (no [B, T, V] log-softmax copy kept) and ignores -100.
    nll = F.cross_entropy(shifted_logits.transpose(1, 2), shifted_labels, ignore_index=IGNORE, reduction="none")
    return -nll * mask, mask


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed target log-prob per sequence, shape [B] (not length-normalised)."""
    logp, _ = token_logprobs(logits, labels)
    return logp.sum(dim=1)


def gathered_sequence_logprobs(logits: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor,
                               labels: torch.Tensor, owners: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob, token count) of `n` targets whose tokens `labels` are predicted at logits[rows, positions]
    and belong to target `owners` — the layout of prefix-shared rows (`data/shared_prefix.py`)."""
    logp = -F.cross_entropy(logits[rows, positions].float(), labels, reduction="none")
    sums = torch.zeros(n, dtype=logp.dtype, device=logp.device).index_add_(0, owners, logp)
    return sums, torch.bincount(owners, minlength=n)


def masked_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean NLL over every target token in the batch, number of target tokens).

    A token mean over the whole batch, so packing examples into rows does not change the loss.
    """
    logp, mask = token_logprobs(logits, labels)
    n_tokens = mask.sum()
    return -logp.sum() / n_tokens.clamp(min=1), n_tokens
