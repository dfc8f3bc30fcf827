"""Token log-probs from hidden states and the LM head's weight, a chunk of positions at a time
(`chunked_logprobs`: what every fit and scoring pass uses, through `models/head.py`), where the scored labels sit
(`label_positions`) and their sums per sequence (`owner_sums`). The full-logit versions they are tested against
live in tests/reference.py.

Labels follow the Hugging Face convention: position t's label is the token at t, -100 where no loss is taken;
logits at t predict the token at t+1, so both are shifted by one here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def owner_sums(values: torch.Tensor, owners: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ values, count) per owner 0…n-1: token log-probs summed into sequence log-probs."""
    sums = torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, owners, values)
    return sums, torch.bincount(owners, minlength=n)


def label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, positions, tokens) of every scored label of a [B, T] label matrix: the logits at
    [rows, positions] predict `tokens` (the shift by one of the module docstring)."""
    rows, positions = (labels[:, 1:] != IGNORE).nonzero(as_tuple=True)
    return rows, positions, labels[rows, positions + 1]


class _LinearLogprobs(torch.autograd.Function):
    """log softmax(h Wᵀ + b)[token] per row, a chunk of rows at a time, forward and backward: the [chunk, vocab]
    logits are the only large buffer, updated in place (exp, the soft-cap, the gradient), and recomputed in
    backward instead of kept. Compute dtype = the autocast dtype when autocast is on (bf16-mixed), else W's;
    softmax and log-sum-exp in fp32; dW accumulated in fp32 over chunks."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, tokens, chunk: int, softcap: float | None):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        with torch.autocast(device, enabled=False):
            w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
            for start in range(0, hidden.shape[0], chunk):
                rows = slice(start, start + chunk)
                logits = _capped_logits(hidden[rows].to(dtype), w, b, softcap)
                target = logits.gather(1, tokens[rows, None]).squeeze(1)
                top = logits.amax(dim=1, keepdim=True)
                lse[rows] = logits.sub_(top).exp_().sum(dim=1).log_() + top.squeeze(1)
                out[rows] = target - lse[rows]
        ctx.save_for_backward(hidden, weight, bias, tokens, lse)
        ctx.chunk, ctx.softcap, ctx.dtype = chunk, softcap, dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, tokens, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(ctx.dtype)
            b = None if bias is None else bias.to(ctx.dtype)
            for start in range(0, hidden.shape[0], ctx.chunk):
                rows = slice(start, start + ctx.chunk)
                h, g = hidden[rows].to(ctx.dtype), grad_out[rows].float()
                logits = _capped_logits(h, w, b, ctx.softcap)
                # d log p[t] / d logits = onehot(t) − softmax; through the cap y = c·tanh(x/c): × (1 − (y/c)²)
                slope = None if not ctx.softcap else 1 - (logits / ctx.softcap).square_()
                grad = logits.sub_(lse[rows, None]).exp_().mul_(-g[:, None])
                grad.scatter_add_(1, tokens[rows, None], g[:, None])
                if slope is not None:
                    grad.mul_(slope)
                grad = grad.to(ctx.dtype)
                if grad_h is not None:
                    grad_h[rows] = (grad @ w).to(hidden.dtype)
                if grad_w is not None:
                    grad_w.add_(grad.T @ h)
                if grad_b is not None:
                    grad_b.add_(grad.sum(dim=0))
        return (grad_h, None if grad_w is None else grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype), None, None, None)


def _capped_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   softcap: float | None) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()
    if softcap:  # Gemma-2 style final-logit soft-capping, as the model's own head applies it
        logits.div_(softcap).tanh_().mul_(softcap)
    return logits


def chunked_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tokens: torch.Tensor,
                     chunk: int, softcap: float | None = None) -> torch.Tensor:
    """log softmax(hidden @ weightᵀ + bias)[tokens] for N selected positions, shape [N], fp32, computed `chunk`
    rows at a time, so no [N, vocab] logit matrix exists at once — in the forward pass or the backward pass.

    Backward recomputes each chunk's logits (one extra LM-head matmul over the selected positions; the naive path
    instead runs the head on every position, prompts and padding included). Liger-Kernel's and Cut Cross
    Entropy's fused linear-cross-entropy kernels do the same in Triton, but only on CUDA and only for a scalar
    mean loss; DPO, the E-step weights and scoring need per-token log-probs, with any upstream gradient, on every
    backend, so this is a small autograd function of its own (tested against the full log-softmax)."""
    if hidden.shape[0] == 0:
        # an empty batch (a DDP padding row: every label ignored) must still reach every parameter — the decoder
        # through `hidden`, the head through `weight` — or DDP waits for their gradients on the other ranks
        return hidden.float().sum(dim=1) * 0 + 0 * weight.sum()
    return _LinearLogprobs.apply(hidden, weight, bias, tokens, chunk, softcap)
