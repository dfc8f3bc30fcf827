"""Log-probs of the target tokens of a batch without the `[tokens, vocabulary]` logit matrix.

A Hugging Face causal LM's forward pass returns logits for every position: at Qwen's 151,936-token vocabulary an
E-step scoring batch of 8 × 4,096 positions is ~20 GB of bf16 logits plus the fp32 copy the log-softmax takes,
and prompts, padding and the shared prefix are never scored. Here the decoder runs alone, its last hidden states
are gathered at the positions that predict a target token, and the LM head and log-softmax run on those only, in
chunks (`losses.chunked_logprobs`). The chunk holds `logits_chunk_mib` MiB of fp32 logits whatever the vocabulary.

Whether a model's logits really are head(decoder(x)) (optionally soft-capped, as Gemma-2's) is checked once per
model object, on the first batch it scores, against the model's own forward pass on an 8-token probe: Cohere's
logit scale, Granite's `logits_scaling`, MiniCPM's width scaling or a custom head change the logits after the
linear layer, and such models take the model's own forward pass, with `logits_to_keep` where the model has it —
exact, only not as lean (tests/test_head.py).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any
from weakref import WeakKeyDictionary

import torch
from torch import nn

from promptcot_pl.losses.logprobs import chunked_logprobs, label_positions

log = logging.getLogger(__name__)

DEFAULT_CHUNK_MIB = 256


def _output_embeddings(model: nn.Module) -> Any:
    """A Hugging Face model's LM head (`get_output_embeddings()`), None for other modules."""
    get = getattr(model, "get_output_embeddings", None)
    return get() if callable(get) else None


def chunk_rows(model: nn.Module, chunk_mib: int = DEFAULT_CHUNK_MIB) -> int:
    """Positions per LM-head chunk: `chunk_mib` MiB of fp32 logits at this model's vocabulary."""
    vocab = _output_embeddings(model).weight.shape[0]
    return max(1, chunk_mib * 2**20 // (4 * vocab))


_LEAN: WeakKeyDictionary[nn.Module, bool] = WeakKeyDictionary()  # model → its probe's verdict


def _lean_head(model: nn.Module, probe_ids: torch.Tensor) -> tuple[nn.Module, nn.Linear, float | None] | None:
    """(decoder, head, soft-cap) when the model's logits are head(decoder(x)) (optionally soft-capped), else None;
    decided on this model's first call by comparing both on `probe_ids[:1, :8]` (every rank calls it at the same
    step, so FSDP's collective forward passes stay in step)."""
    head = _output_embeddings(model)
    decoder = getattr(model, "base_model", None)
    if not isinstance(head, nn.Linear) or decoder is None or decoder is model:
        return None
    softcap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    if model not in _LEAN:
        _LEAN[model] = _lean_matches(model, decoder, head, softcap, probe_ids[:1, :8])
        if not _LEAN[model]:
            log.info("%s: logits are not the LM head's output alone (a logit scale?): log-probs come from the "
                     "model's own forward pass", type(model).__name__)
    return (decoder, head, softcap) if _LEAN[model] else None


def _lean_matches(model: nn.Module, decoder: nn.Module, head: nn.Linear, softcap: float | None,
                  ids: torch.Tensor) -> bool:
    training = model.training
    model.eval()  # no dropout: both passes must see the same network
    try:
        with torch.no_grad():
            lean = head(decoder(input_ids=ids, use_cache=False).last_hidden_state).float()
            if softcap:
                lean = softcap * torch.tanh(lean / softcap)
            full = model(input_ids=ids, use_cache=False).logits.float()
    finally:
        model.train(training)
    # centred logits, compared relative to their spread: a scale on the logits shows however small they are
    lean, full = lean - lean.mean(-1, keepdim=True), full - full.mean(-1, keepdim=True)
    return bool(((lean - full).abs().max() <= 1e-3 * full.abs().max().clamp(min=1e-6)).item())


def sliding_window(model: nn.Module) -> int | None:
    """The attention window of a model with sliding-window layers (Mistral, Gemma-2/3 local layers, Qwen2 with
    `use_sliding_window`), else None."""
    config = getattr(model, "config", None)
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return int(window) if window else None


def model_mask(model: nn.Module, mask: torch.Tensor | None) -> torch.Tensor | None:
    """The attention mask as this model's attention implementation reads it.

    A 4-D mask (prefix-shared rows) is built boolean (True = may attend). transformers hands a 4-D mask to the
    attention function unchanged: sdpa reads a boolean as "attend", but eager attention *adds* the mask to the
    scores, so True/False would become +1/+0 and every target would see its siblings. For anything but
    sdpa the mask becomes additive: 0 where allowed, the dtype's minimum elsewhere. Flash-attention and flex take no
    dense 4-D mask at all: those need `trainer.share_prefix=false` (one target per row, a 2-D padding mask)."""
    if mask is None or mask.dim() != 4 or mask.dtype != torch.bool:
        return mask
    window = sliding_window(model)
    if window is not None and mask.shape[-1] > window:
        # transformers passes a 4-D mask through unchanged: sliding-window layers would attend beyond their window
        raise ValueError(f"{type(model).__name__} attends within a sliding window of {window} tokens, which the 4-D "
                         f"mask of prefix-shared rows ({mask.shape[-1]} tokens) cannot express; set "
                         "trainer.share_prefix=false")
    config = getattr(model, "config", None)
    implementation = getattr(config, "_attn_implementation", None) or "sdpa"
    if implementation == "sdpa":
        return mask
    if "flash" in implementation or "flex" in implementation:
        raise ValueError(f"attention implementation {implementation!r} cannot take the 4-D mask of prefix-shared "
                         "rows; set trainer.share_prefix=false")
    dtype = next(model.parameters()).dtype
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


def target_logprobs(model: nn.Module, batch: dict[str, torch.Tensor], rows: torch.Tensor, positions: torch.Tensor,
                    tokens: torch.Tensor, chunk_mib: int = DEFAULT_CHUNK_MIB) -> torch.Tensor:
    """log p(tokens[i] | row rows[i] up to positions[i]) for every i, shape [N], fp32; differentiable.

    `batch` holds `input_ids` and optionally `attention_mask` (2-D, or the 4-D mask of prefix-shared rows) and
    `position_ids`."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": model_mask(model, batch.get("attention_mask")),
              "position_ids": batch.get("position_ids"), "use_cache": False}
    lean = _lean_head(model, batch["input_ids"])
    if lean is None:
        return _full_logits_logprobs(model, inputs, rows, positions, tokens)
    decoder, head, softcap = lean
    hidden = decoder(**inputs).last_hidden_state[rows, positions]
    return chunked_logprobs(hidden, head.weight, head.bias, tokens, chunk_rows(model, chunk_mib), softcap)


def _full_logits_logprobs(model: nn.Module, inputs: dict, rows: torch.Tensor, positions: torch.Tensor,
                          tokens: torch.Tensor) -> torch.Tensor:
    first = 0
    if len(positions) and "logits_to_keep" in inspect.signature(model.forward).parameters:
        first = int(positions.min())  # the head runs from the first scored position on
        inputs = {**inputs, "logits_to_keep": torch.arange(first, inputs["input_ids"].shape[1],
                                                           device=inputs["input_ids"].device)}
    logits = model(**inputs).logits[rows, positions - first].float()
    return logits.gather(1, tokens[:, None]).squeeze(1) - torch.logsumexp(logits, dim=1)


def labelled_logprobs(model: nn.Module, batch: dict[str, torch.Tensor],
                      chunk_mib: int = DEFAULT_CHUNK_MIB) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob of every target token of a padded batch with a `labels` matrix, the row it belongs to)."""
    rows, positions, tokens = label_positions(batch["labels"])
    return target_logprobs(model, batch, rows, positions, tokens, chunk_mib), rows
