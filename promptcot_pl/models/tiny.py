"""Build, offline and cached, a tiny Llama-style model and a tokenizer trained on a corpus.

`tokenizers` trains the BPE in one of the real families' styles (`models/tokenizer_styles.py`: ChatML/Qwen by
default, Llama-3, SentencePiece/Llama-2), with its chat template; `transformers` provides the Llama architecture,
the generation config (every EOS id of the style) and `save_pretrained`, so the result loads with
`AutoModelForCausalLM`/`AutoTokenizer` and in vLLM. Input and output embeddings are untied (the results in docs/
were measured so; the engines refresh tied models in place too: tests/test_generation_vllm.py).
The cache key is the tiny config, the seed and a digest of the corpus, so the same corpus never retrains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from promptcot_pl.config import TinyModelConfig
from promptcot_pl.data.atomic import atomic_dir
from promptcot_pl.models.tokenizer_styles import stop_ids, train_tokenizer


def build_tiny_model(cfg: TinyModelConfig, tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=pad, bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # like the real checkpoints: every id that ends a generation (turn end and end of text) in generation_config
    model.generation_config = GenerationConfig(eos_token_id=stop_ids(tokenizer, cfg.style), pad_token_id=pad,
                                               bos_token_id=tokenizer.bos_token_id)
    return model


def tiny_model_dir(cfg: TinyModelConfig, texts: Sequence[str], cache_dir: str | Path, seed: int) -> Path:
    """The cached directory of the tiny model for this config, corpus and seed; built on first use."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"tiny": asdict(cfg), "seed": seed, "format": 2}, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    target = Path(cache_dir).expanduser() / f"tiny-{digest.hexdigest()[:16]}"
    if (target / "config.json").is_file():
        return target

    def build(tmp: Path) -> None:
        tokenizer = train_tokenizer(texts, cfg.vocab_size, cfg.style, cfg.thinking, cfg.split_digits)
        build_tiny_model(cfg, tokenizer, seed).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    # concurrent builders race harmlessly (the first one's model stays), a killed one leaves no half model
    return atomic_dir(target, build, replace=False)
