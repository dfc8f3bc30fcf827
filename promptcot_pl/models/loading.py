"""Load any Hugging Face causal LM and its tokenizer from a path (local directory or hub id).

transformers does the work; this module only fixes the conventions the rest of the package relies on:
a pad token always exists (the EOS token when the tokenizer has none), dtypes are named by config strings, and
`stop_ids` is every token id that ends a generation (the tokenizer's EOS and the checkpoint's generation config
list: Qwen2.5-Instruct stops on <|im_end|> and <|endoftext|>, Llama-3-Instruct on three ids).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{path}: the tokenizer has no EOS token; targets need one to end generation")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str | Path, dtype: str = "float32", empty: bool = False) -> PreTrainedModel:
    """The checkpoint's model in `dtype`; `empty`: its architecture on the meta device — no weights read, no
    memory taken — for an FSDP rank whose shards are filled from rank 0 (`trainer.load_for_fit`)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {sorted(DTYPES)}")
    if empty:
        config = AutoConfig.from_pretrained(str(path))
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype])


def stop_ids(path: str | Path, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokenizer's EOS id, then the generation config's EOS ids (when the checkpoint has one), deduplicated."""
    ids = [tokenizer.eos_token_id]
    try:
        saved = GenerationConfig.from_pretrained(str(path)).eos_token_id
    except OSError:  # no generation_config.json
        saved = None
    ids += saved if isinstance(saved, list) else [saved] if saved is not None else []
    return list(dict.fromkeys(ids))
