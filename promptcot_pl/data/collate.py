"""Tokenize (prompt, target) pairs with prompt-masked labels, and batch them padded or packed.

Tokenisation is `data/encode.py`'s one rule (joint, boundary located, EOS appended). An example longer than
`max_length` is dropped — never cut, which would teach a model not to finish — and the caller counts the drops.
Labels are -100 on prompt tokens and padding, so the loss falls on target tokens (plus the appended EOS) only.
Packing concatenates several examples into one row with per-segment position ids and no attention mask;
transformers then builds a block-diagonal causal mask from the position ids (`masking_utils
.find_packed_sequence_indices`), so segments never attend to each other and the packed loss equals the
unpacked one. Each segment starts with a masked label, so no token is predicted across a boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from promptcot_pl.data.encode import encode, encode_prompt

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    weight: float = 1.0  # how much this sequence counts in a weighted NLL (E-step)
    index: int = -1  # position in the caller's list, to reassemble scores computed in length-sorted batches

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_pair(tokenizer: PreTrainedTokenizerBase, prompt: str, target: str | Sequence[int],
                max_length: int) -> Encoded | None:
    """Prompt + target + EOS with the prompt masked, or None when the whole does not fit in `max_length` tokens
    (the caller counts such drops). A target given as token ids (an engine's sample, through its own EOS) is
    appended to the prompt's ids as it is: what the model generated is what it is scored and trained on."""
    if isinstance(target, str):
        ids, boundary = encode(tokenizer, prompt, target)
    else:
        prompt_ids = encode_prompt(tokenizer, prompt)
        ids, boundary = prompt_ids + list(target), len(prompt_ids)
    if len(ids) > max_length or boundary >= len(ids):
        return None
    return Encoded(ids, [IGNORE] * boundary + ids[boundary:])


def target_count(item: Encoded | Sequence[Encoded]) -> float:
    """What a (packed) item adds to a loss's denominator: its weighted number of predicted target tokens (a row's
    first label is never predicted: the shift by one of `losses.label_positions`, and packing masks it)."""
    parts = [item] if isinstance(item, Encoded) else item
    return float(sum(e.weight * sum(label != IGNORE for label in e.labels[1:]) for e in parts))


def pad_batch(examples: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch with an attention mask, plus each example's weight and index."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e)] = torch.tensor(e.input_ids)
        labels[row, : len(e)] = torch.tensor(e.labels)
        mask[row, : len(e)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask,
            "weight": torch.tensor([e.weight for e in examples], dtype=torch.float32),
            "index": torch.tensor([e.index for e in examples], dtype=torch.long),
            "real_tokens": mask.sum()}  # the rest of the [B, T] batch is padding


def pack_examples(examples: Sequence[Encoded], max_length: int) -> list[list[Encoded]]:
    """First-fit-decreasing bin packing of examples into rows of at most `max_length` tokens."""
    rows: list[list[Encoded]] = []
    room: list[int] = []
    for example in sorted(examples, key=len, reverse=True):
        for i, free in enumerate(room):
            if len(example) <= free:
                rows[i].append(example)
                room[i] -= len(example)
                break
        else:
            rows.append([example])
            room.append(max_length - len(example))
    return rows


def packed_batch(rows: Sequence[Sequence[Encoded]], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows of concatenated segments; position ids restart at 0 in every segment (and in the padding tail)."""
    width = max(sum(len(e) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for e in row:
            end = start + len(e)
            ids[r, start:end] = torch.tensor(e.input_ids)
            labels[r, start:end] = torch.tensor(e.labels)
            labels[r, start] = IGNORE  # never predict a segment's first token from the previous segment
            positions[r, start:end] = torch.arange(len(e))
            start = end
        positions[r, start:] = torch.arange(width - start)
    real = sum(len(e) for row in rows for e in row)
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "real_tokens": torch.tensor(real)}
