"""The lean log-prob path (`losses.chunked_logprobs`, `models/head.py`) equals the full-logits reference in values
and gradients, at any chunk size, on a model with a real-size vocabulary and on the soft-capped / fallback heads."""

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

from promptcot_pl.losses.logprobs import chunked_logprobs, label_positions
from promptcot_pl.models.head import _lean_head, chunk_rows, target_logprobs
from tests.reference import token_logprobs


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_chunked_logprobs_equal_full_log_softmax_with_gradients(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(300, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, 300, (50,))
    upstream = torch.randn(50, dtype=torch.float64)  # per-token weights, as DPO and the E-step apply them

    reference = torch.log_softmax(hidden @ weight.T + bias, dim=1).gather(1, tokens[:, None]).squeeze(1)
    ref_grads = torch.autograd.grad((reference * upstream).sum(), (hidden, weight, bias))
    ours = chunked_logprobs(hidden, weight, bias, tokens, chunk)  # fp32 softmax inside
    grads = torch.autograd.grad((ours * upstream).sum(), (hidden, weight, bias))
    assert torch.allclose(ours.double(), reference, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got.double(), want, atol=1e-4, rtol=1e-4)


def _model(vocab: int, softcap: float | None = None) -> LlamaForCausalLM | Gemma2ForCausalLM:
    """A tied Llama, or with `softcap` a Gemma-2 (whose final logits are soft-capped)."""
    torch.manual_seed(0)
    shape = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)
    if softcap:
        return Gemma2ForCausalLM(Gemma2Config(**shape, head_dim=8, final_logit_softcapping=softcap))
    return LlamaForCausalLM(LlamaConfig(**shape))


def _batch(vocab: int):
    torch.manual_seed(1)
    ids = torch.randint(0, vocab, (3, 20))
    mask = torch.ones_like(ids)
    mask[2, 15:] = 0  # a padded row
    labels = ids.clone()
    labels[:, :6] = -100  # the prompt
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_target_logprobs_equal_the_models_own_logits_at_a_qwen_sized_vocabulary():
    vocab = 151_936
    model, batch = _model(vocab), _batch(vocab)
    assert chunk_rows(model, 1) == 1  # 1 MiB of fp32 logits at 152k is 1 position: many chunks here
    rows, positions, tokens = label_positions(batch["labels"])
    ours = target_logprobs(model, batch, rows, positions, tokens, chunk_mib=4)
    ours.sum().backward()
    lean_grad = model.model.embed_tokens.weight.grad.clone()  # the tied head + embedding
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    reference, mask = token_logprobs(logits, batch["labels"])
    reference.sum().backward()
    assert torch.allclose(ours, reference[mask], atol=1e-5)
    want = model.model.embed_tokens.weight.grad  # fp32 sums in another order: equal to a relative 1e-4 overall
    assert (lean_grad - want).norm() / want.norm() < 1e-4


def test_soft_capped_heads_are_capped():
    """(Heads that scale their logits fall back to the model's own forward pass: tests/test_head.py.)"""
    vocab = 500
    batch = _batch(vocab)
    rows, positions, tokens = label_positions(batch["labels"])
    capped = _model(vocab, softcap=0.5)  # a tiny cap, so a missing cap would show
    lean = _lean_head(capped, batch["input_ids"])
    assert lean is not None
    decoder, head, cap = lean
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    want = torch.log_softmax(torch.tanh(head(hidden) / 0.5) * 0.5, dim=-1)[rows, positions].gather(1, tokens[:, None])
    assert torch.allclose(target_logprobs(capped, batch, rows, positions, tokens), want.squeeze(1), atol=1e-5)


def test_soft_capped_gradients_and_bf16_autocast_match_the_reference():
    torch.manual_seed(0)
    hidden = torch.randn(40, 16, requires_grad=True)
    weight = torch.randn(200, 16, requires_grad=True)
    tokens = torch.randint(0, 200, (40,))
    upstream = torch.randn(40)

    def reference(h, w):
        return torch.log_softmax(torch.tanh((h @ w.T).float() / 2.0) * 2.0, dim=1).gather(1, tokens[:, None]).squeeze(1)

    want = torch.autograd.grad((reference(hidden, weight) * upstream).sum(), (hidden, weight))
    got = torch.autograd.grad((chunked_logprobs(hidden, weight, None, tokens, 9, softcap=2.0) * upstream).sum(),
                              (hidden, weight))
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-5, rtol=1e-4)

    # bf16-mixed: fp32 masters, bf16 matmuls, fp32 softmax; gradients come back in the masters' dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = chunked_logprobs(hidden, weight, None, tokens, 9)
    grads = torch.autograd.grad(ours.sum(), (hidden, weight))
    assert ours.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    exact = torch.log_softmax(hidden @ weight.T, dim=1).gather(1, tokens[:, None]).squeeze(1)
    exact_grads = torch.autograd.grad(exact.sum(), (hidden, weight))
    assert (ours - exact).abs().max() < 0.5  # bf16 logits of magnitude ~10: ±0.05 each
    for g, w in zip(grads, exact_grads):
        assert (g - w).norm() / w.norm() < 0.05
