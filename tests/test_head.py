"""The lean LM-head path (decoder, then the head on scored positions only) is taken only where it gives the model's
own log-probs: a model that scales its logits after the head (Granite's `logits_scaling`) is caught by the probe on
its first batch and scored by its own forward pass. Prefix-shared rows are refused for sliding-window attention,
which their 4-D mask cannot express."""

import pytest
import torch
from transformers import (
    GraniteConfig,
    GraniteForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from promptcot_pl.data.collate import IGNORE
from promptcot_pl.data.shared_prefix import SharedPrefix, shared_prefix_batch
from promptcot_pl.models.head import _LEAN, labelled_logprobs, target_logprobs

SMALL = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=2, max_position_embeddings=128)


def _batch(vocab: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :5] = IGNORE
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}


def _reference(model, batch) -> torch.Tensor:
    """log p of every label from the model's own logits (shifted by one), in label order."""
    logp = model(input_ids=batch["input_ids"]).logits[:, :-1].float().log_softmax(-1)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    return logp.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)[keep]


@pytest.mark.parametrize("cls, config, lean", [
    (LlamaForCausalLM, LlamaConfig(**SMALL), True),
    (GraniteForCausalLM, GraniteConfig(**SMALL, logits_scaling=8.0), False),
], ids=["llama", "granite"])
def test_logprobs_are_the_models_own(cls, config, lean):
    torch.manual_seed(0)
    model = cls(config).eval()
    batch = _batch(config.vocab_size)
    with torch.no_grad():
        logp, _ = labelled_logprobs(model, batch)
        expected = _reference(model, batch)
    assert _LEAN[model] is lean
    assert torch.allclose(logp, expected, atol=1e-5)


def _prefix_shared(vocab: int, prompt: int, targets: int) -> dict[str, torch.Tensor]:
    row = SharedPrefix(list(range(1, prompt + 1)), [[(i + k) % vocab for i in range(targets)] for k in range(2)],
                       [0, 1])
    return shared_prefix_batch([row], pad_id=0)


def test_prefix_shared_rows_are_refused_beyond_a_sliding_window():
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(**SMALL, sliding_window=16)).eval()
    batch = _prefix_shared(64, 10, 5)  # 20 tokens: beyond the window
    with pytest.raises(ValueError, match=r"sliding window of 16 tokens.*trainer.share_prefix=false"):
        target_logprobs(model, batch, batch["score_row"], batch["score_pos"], batch["score_label"])
    short = _prefix_shared(64, 6, 4)  # 14 tokens: within it, exact
    with torch.no_grad():
        assert torch.isfinite(target_logprobs(model, short, short["score_row"], short["score_pos"],
                                              short["score_label"])).all()
    # Qwen2 configs name a window but attend fully unless use_sliding_window is set
    qwen = Qwen2ForCausalLM(Qwen2Config(**SMALL, sliding_window=16, use_sliding_window=False)).eval()
    with torch.no_grad():
        assert torch.isfinite(target_logprobs(qwen, batch, batch["score_row"], batch["score_pos"],
                                              batch["score_label"])).all()
