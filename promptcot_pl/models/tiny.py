"""Build, offline and cached, a tiny Llama-style model and a byte-level BPE tokenizer trained on a corpus.

`tokenizers` trains the BPE; `transformers` provides the Llama architecture and `save_pretrained`, so the result
loads with `AutoModelForCausalLM`/`AutoTokenizer` and in vLLM. Input and output embeddings are untied because
vLLM's in-place weight reload is only exact for untied embeddings (see ENVIRONMENT.md).
The cache key is the tiny config, the seed and a digest of the corpus, so the same corpus never retrains.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from promptcot_pl.config.schema import TinyModelConfig

PAD, EOS = "<|pad|>", "<|endoftext|>"


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD, clean_up_tokenization_spaces=False)


def build_tiny_model(cfg: TinyModelConfig, tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def tiny_model_dir(cfg: TinyModelConfig, texts: Sequence[str], cache_dir: str | Path, seed: int) -> Path:
    """The cached directory of the tiny model for this config, corpus and seed; built on first use."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"tiny": asdict(cfg), "seed": seed, "format": 1}, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    target = Path(cache_dir).expanduser() / f"tiny-{digest.hexdigest()[:16]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    try:
        tokenizer = train_tokenizer(texts, cfg.vocab_size)
        build_tiny_model(cfg, tokenizer, seed).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: concurrent builders race harmlessly, a killed one leaves no half model
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
