"""Prefix-shared rows: score many targets that share one prompt (the K rationale candidates of a pair) while
encoding the prompt once instead of K times.

A row holds the prompt, then several targets one after another. A boolean [B, 1, L, L] attention mask lets every
target token attend to the prompt and to its own earlier tokens only, and each target's position ids continue from
the prompt's end, so a target's log-prob is the same as when prompt + target are scored alone (tests check 1e-5).
transformers hands such a 4-D mask to the attention function as given: sdpa reads the boolean, eager attention gets
it as an additive float mask (`modules/head.model_mask`); backends that take no dense mask (flash-attention-2, flex)
score with `trainer.share_prefix=false`: rows of one target each, which get a plain 2-D padding mask. The prompt's last position predicts the first token of every target in the row,
so scoring gathers (row, position, label, owner) tuples instead of shifting a label matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from promptcot_pl.data.encode import encode, encode_prompt


class CutPair(ValueError):
    """A pair that does not fit in the scoring length: its score would be that of a cut sequence."""

    def __init__(self, position: int, max_length: int) -> None:
        super().__init__(f"pair {position} does not fit in {max_length} tokens; scores of cut sequences would be wrong")
        self.position = position


@dataclass
class SharedPrefix:
    prompt_ids: list[int]
    targets: list[list[int]] = field(default_factory=list)  # each ends with EOS
    indices: list[int] = field(default_factory=list)  # the caller's position of each target

    def __len__(self) -> int:
        return len(self.prompt_ids) + sum(map(len, self.targets))


def group_by_prompt(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str | Sequence[int]]],
                    max_length: int, row_tokens: int, max_targets: int) -> list[SharedPrefix]:
    """Rows of (prompt, targets): pairs with the same prompt share a row until it would exceed `row_tokens` or
    hold `max_targets` (a single prompt + target always fits). Tokenization is `data/encode.py`'s, as in
    `collate.encode_pair`: a target whose joint tokenisation changes the prompt's ids gets a row of its own. A
    target given as token ids (an engine's sample) follows the prompt's ids as it is."""
    rows: list[SharedPrefix] = []
    open_rows: dict[tuple[int, ...], SharedPrefix] = {}
    prompt_ids: dict[str, list[int]] = {}  # each prompt encoded once, not once per candidate
    for i, (prompt, target) in enumerate(pairs):
        if prompt not in prompt_ids:
            prompt_ids[prompt] = encode_prompt(tokenizer, prompt)
        if isinstance(target, str):
            ids, boundary = encode(tokenizer, prompt, target, prompt_ids=prompt_ids[prompt])
        else:  # token ids as sampled (through their EOS, if any): scored as they are, never re-tokenised
            ids, boundary = prompt_ids[prompt] + list(target), len(prompt_ids[prompt])
        if len(ids) > max_length:
            raise CutPair(i, max_length)
        key, target_ids = tuple(ids[:boundary]), ids[boundary:]
        row = open_rows.get(key)
        if row is None or len(row.targets) >= max_targets or len(row) + len(target_ids) > row_tokens:
            row = open_rows[key] = SharedPrefix(list(key))
            rows.append(row)
        row.targets.append(target_ids)
        row.indices.append(i)
    return rows


def shared_prefix_batch(rows: Sequence[SharedPrefix], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids, position_ids, a boolean [B, 1, L, L] attention mask (a [B, L] padding mask when every row holds
    one target), and for scoring the flat tuples
    `score_row`, `score_pos` (where the logits predicting a target token sit), `score_label` (that token) and
    `score_owner` (which of this batch's targets it belongs to, in `index` order)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    # segment 0 = prompt, k = k-th target, -1 = padding (attends causally to itself only, never scored)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    score_row: list[int] = []
    score_pos: list[int] = []
    score_label: list[int] = []
    score_owner: list[int] = []
    index: list[int] = []
    for r, row in enumerate(rows):
        n_prompt = len(row.prompt_ids)
        ids[r, :n_prompt] = torch.tensor(row.prompt_ids)
        positions[r, :n_prompt] = torch.arange(n_prompt)
        segments[r, :n_prompt] = 0
        start = n_prompt
        for k, (target, caller_index) in enumerate(zip(row.targets, row.indices), start=1):
            end = start + len(target)
            ids[r, start:end] = torch.tensor(target)
            positions[r, start:end] = torch.arange(n_prompt, n_prompt + len(target))
            segments[r, start:end] = k
            # token j of the target is predicted at the prompt's last position (j = 0) or at start + j - 1
            score_pos += [n_prompt - 1, *range(start, end - 1)]
            score_label += target
            score_row += [r] * len(target)
            score_owner += [len(index)] * len(target)
            index.append(caller_index)
            start = end
        positions[r, start:] = torch.arange(width - start)
    if all(len(row.targets) == 1 for row in rows):  # plain right-padded rows: any attention backend takes them
        mask = (segments >= 0).long()
    else:
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        query, key = segments[:, :, None], segments[:, None, :]
        mask = (((query == key) | ((key == 0) & (query > 0))) & causal)[:, None]
    return {"input_ids": ids, "position_ids": positions, "attention_mask": mask,
            "score_row": torch.tensor(score_row), "score_pos": torch.tensor(score_pos),
            "score_label": torch.tensor(score_label), "score_owner": torch.tensor(score_owner),
            "index": torch.tensor(index), "real_tokens": torch.tensor(sum(len(r) for r in rows))}
