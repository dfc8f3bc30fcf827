"""Preference pairs as training batches: one prefix-shared row per pair — the prompt once, then the chosen and
the rejected completion (`data/shared_prefix.py`) — so both completions are scored in one forward pass without
encoding the prompt twice. Owner 2k of a batch is row k's chosen completion, owner 2k+1 its rejected one.

Reference log-probs, when precomputed for the round, travel with the batch as `ref_chosen` / `ref_rejected`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, partial

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from promptcot_pl.data.encode import encode, encode_prompt
from promptcot_pl.data.sharding import sharded_loader
from promptcot_pl.data.shared_prefix import SharedPrefix, shared_prefix_batch

Triplet = tuple[str, str, str]  # (prompt, chosen, rejected)


def first_step_cut(chosen: Sequence[int], rejected: Sequence[int],
                   ends_step: Callable[[int], bool]) -> tuple[list[int], list[int]]:
    """Both completions (token ids) cut after the solution step in which they first differ (Step-DPO's pairs,
    Lai et al. 2024): the steps they share cancel in DPO's log-ratio difference, and the steps after the first
    slip — mostly correct arithmetic on a wrong running total — are no evidence against themselves. A step ends
    at a token for which `ends_step` holds (a newline or EOS); a completion with no step end after the first
    difference is kept whole (tests/test_selfplay_pairs.py)."""
    first = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), min(len(chosen), len(rejected)))

    def cut(ids: Sequence[int]) -> list[int]:
        end = next((i for i in range(first, len(ids)) if ends_step(ids[i])), len(ids) - 1)
        return list(ids[: end + 1])

    return cut(chosen), cut(rejected)


def step_ends(tokenizer: PreTrainedTokenizerBase) -> Callable[[int], bool]:
    """Whether a token ends a solution step: EOS, or a token whose text holds a newline."""
    eos = tokenizer.eos_token_id
    return cache(lambda i: i == eos or "\n" in tokenizer.decode([i]))


def encode_preferences(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Triplet], max_length: int,
                       step_level: bool = False) -> tuple[list[SharedPrefix], list[int]]:
    """(rows, indices of the pairs kept). A pair whose prompt + chosen or prompt + rejected (+ EOS) exceeds
    `max_length` is left out: a cut completion's log-prob would compare unequal things. So is a pair whose two
    joint tokenisations (`data/encode.py`) disagree with the prompt's own ids (a token across the seam), which one
    shared row cannot hold and the reference pass (`scores.py`: prompt text + completion ids) would score
    differently. `step_level`: both completions end after their first differing step (`first_step_cut`)."""
    rows, kept = [], []
    ends = step_ends(tokenizer) if step_level else None
    for i, (prompt, chosen, rejected) in enumerate(pairs):
        ids = encode_prompt(tokenizer, prompt)
        (c_ids, c_cut), (r_ids, r_cut) = (encode(tokenizer, prompt, t, prompt_ids=ids) for t in (chosen, rejected))
        if max(len(c_ids), len(r_ids)) > max_length or not c_ids[:c_cut] == r_ids[:r_cut] == ids:
            continue
        targets = [c_ids[c_cut:], r_ids[r_cut:]]
        if ends is not None:
            targets = list(first_step_cut(targets[0], targets[1], ends))
        rows.append(SharedPrefix(c_ids[:c_cut], targets, [2 * i, 2 * i + 1]))
        kept.append(i)
    return rows, kept


def preference_batch(rows: Sequence[SharedPrefix], pad_id: int, ref: torch.Tensor | None = None,
                     share_prefix: bool = True) -> dict[str, torch.Tensor]:
    """`shared_prefix_batch` plus `pair_index` [B] and, when `ref` ([n_pairs, 2]: chosen, rejected) is given,
    the rows' reference log-probs `ref_chosen` / `ref_rejected`. `share_prefix=False`: the chosen and the rejected
    completion each get a row of their own (the prompt twice; for attention backends without dense masks)."""
    if not share_prefix:
        rows = [SharedPrefix(r.prompt_ids, [t], [i]) for r in rows for t, i in zip(r.targets, r.indices)]
    batch = shared_prefix_batch(rows, pad_id)
    pair_index = batch["index"][0::2] // 2
    batch["pair_index"] = pair_index
    if ref is not None:
        batch["ref_chosen"], batch["ref_rejected"] = ref[pair_index, 0].float(), ref[pair_index, 1].float()
    return batch


class PreferenceDataModule(L.LightningDataModule):
    """Shuffled global batches of `batch_size` pairs (a fresh order every epoch, from `seed` + epoch), each split
    over the ranks of a multi-process fit (data/sharding.py)."""

    def __init__(self, rows: Sequence[SharedPrefix], pad_id: int, batch_size: int,
                 ref: torch.Tensor | None = None, num_workers: int = 0, seed: int = 0,
                 share_prefix: bool = True) -> None:
        super().__init__()
        self.rows, self.batch_size, self.num_workers, self.seed = list(rows), batch_size, num_workers, seed
        self.collate = partial(preference_batch, pad_id=pad_id, ref=ref, share_prefix=share_prefix)

    def train_dataloader(self) -> DataLoader:
        window = self.trainer.accumulate_grad_batches if self.trainer is not None else 1
        # the window's (pairs, chosen completion tokens): the DPO term is a mean over pairs, the RPO term over tokens
        return sharded_loader(self.rows, self.batch_size, shuffle=True, seed=self.seed, collate=self.collate,
                              counts=[(1.0, float(len(row.targets[0]))) for row in self.rows], window=window,
                              num_workers=self.num_workers)
