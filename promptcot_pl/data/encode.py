"""The one tokenisation rule: how a prompt, and a prompt with its target, become token ids.

- A prompt is encoded with the tokenizer's own special tokens (Llama's BOS) unless its text already starts with
  the BOS token (a chat template wrote it): never two BOS. Both engines generate from exactly these ids.
- A (prompt, target) pair is tokenised jointly — `prompt + target` in one call — and the boundary located: when
  the joint ids start with the prompt's own ids (the usual case: prompts end in a newline or a template's header)
  the boundary is there; otherwise a token straddles the seam and the boundary is the first token that ends
  after the prompt (character offsets). Encoding the target on its own would differ for SentencePiece tokenizers
  (a spurious "▁" prefix) and at merges across the seam, and training would then not see what the model
  generates.
- EOS (`tokenizer.eos_token_id`, for chat models the end-of-turn token) is appended to a finished target.

Used by collate (fits), prefix-shared rows (scoring), preference batches (DPO), EM, SFT budgets and generation.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def _special(tokenizer: PreTrainedTokenizerBase, text: str) -> bool:
    bos = tokenizer.bos_token
    return not (bos and text.startswith(bos))


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    return tokenizer(prompt, add_special_tokens=_special(tokenizer, prompt)).input_ids


def encode(tokenizer: PreTrainedTokenizerBase, prompt: str, target: str, eos: bool = True,
           prompt_ids: list[int] | None = None) -> tuple[list[int], int]:
    """(ids of prompt + target [+ EOS], number of prompt tokens). `prompt_ids`: `encode_prompt(tokenizer, prompt)`,
    when the caller encodes many targets after one prompt (the K candidates of a pair) and has them already."""
    prompt_ids = encode_prompt(tokenizer, prompt) if prompt_ids is None else prompt_ids
    joint = tokenizer(prompt + target, add_special_tokens=_special(tokenizer, prompt), return_offsets_mapping=True)
    ids = list(joint.input_ids)
    if ids[: len(prompt_ids)] == prompt_ids:
        boundary = len(prompt_ids)
    else:
        seam = len(prompt)
        boundary = next((i for i, (_, end) in enumerate(joint.offset_mapping) if end > seam), len(ids))
        # special tokens (BOS) have (0, 0) offsets and always count as prompt
    if eos:
        ids.append(tokenizer.eos_token_id)
    return ids, boundary

