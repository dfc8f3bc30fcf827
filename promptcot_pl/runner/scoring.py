"""Batched, no-grad scoring of (prompt, target) pairs with `Trainer.predict`: summed target log-prob per pair.
In a multi-process run each rank scores its share of the batches and every rank gets all scores.

Under the same `build_trainer` strategy as every fit, never one candidate per forward pass. By default pairs that
share a prompt (the K candidates of an EM pair) are scored in prefix-shared rows, the prompt encoded once
(`data/shared_prefix.py`); `share_prefix=False` (`trainer.share_prefix`) scores each pair in its own row of a length-sorted, right-padded
batch. Both are exact for a causal LM; tests check they agree with one-at-a-time scoring to 1e-5.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import cast

import torch
from torch.utils.data import DataLoader, IterableDataset

from promptcot_pl import distributed
from promptcot_pl.config import TrainerConfig
from promptcot_pl.data.collate import Encoded, encode_pair, pad_batch
from promptcot_pl.data.shared_prefix import CutPair, group_by_prompt, shared_prefix_batch
from promptcot_pl.data.token_budget import token_batches
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import SequenceScorer
from promptcot_pl.trainer import build_trainer, meta_init, training_source

Pair = tuple[str, str | Sequence[int]]  # (prompt, target text or sampled token ids)


def score_pairs(model_path: str | Path, pairs: Sequence[Pair], *, trainer_cfg: TrainerConfig, max_length: int,
                dtype: str = "float32", root_dir: str | Path = ".",
                share_prefix: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(target | prompt) summed over target tokens, number of target tokens), both shaped [len(pairs)].
    `share_prefix` None: `trainer_cfg.share_prefix`. A target given as token ids is scored on exactly those ids
    (an engine's sample: its log q is the proposal's own density), a text target + EOS as tokenised.
    A batch holds at most `trainer_cfg.score_tokens` token positions (rows × its longest row), at least one row."""
    return score_chunks(model_path, [lambda: list(enumerate(pairs))], len(pairs), trainer_cfg=trainer_cfg,
                        max_length=max_length, dtype=dtype, root_dir=root_dir, share_prefix=share_prefix)


def score_chunks(model_path: str | Path, chunks: Sequence[Callable[[], list[tuple[int, Pair]]]], total: int, *,
                 trainer_cfg: TrainerConfig, max_length: int, dtype: str = "float32", root_dir: str | Path = ".",
                 share_prefix: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`score_pairs` over pairs that come in chunks — each chunk a function returning (index, pair) items, read
    only when its turn comes (EM's candidates, a shard file at a time) — so no process holds more than one chunk
    of pairs. Scores land at their index in [total]; indices no chunk names stay NaN (log-prob) and 0 (tokens)."""
    tokenizer = load_tokenizer(model_path)
    if share_prefix is None:
        share_prefix = trainer_cfg.share_prefix
    collate = partial(shared_prefix_batch if share_prefix else pad_batch, pad_id=tokenizer.pad_token_id)
    batches = _ChunkBatches(chunks, partial(_rows, tokenizer, max_length, share_prefix), trainer_cfg.score_tokens)
    loader: DataLoader = DataLoader(batches, batch_size=None, collate_fn=collate)
    trainer = build_trainer(replace(trainer_cfg, enable_progress_bar=False),
                            max_epochs=1, default_root_dir=root_dir)
    # the weights fits start from (fp32 masters where there are); empty on FSDP ranks > 0: filled from rank 0
    model = load_model(training_source(model_path, dtype), dtype, empty=meta_init(trainer_cfg))
    outputs = cast(list[dict[str, torch.Tensor]],  # one dict per batch (SequenceScorer.predict_step)
                   trainer.predict(SequenceScorer(model, trainer_cfg.logits_chunk_mib), loader))
    if distributed.world_size() > 1:  # scores only: a few numbers per pair
        outputs = [out for part in distributed.gather_objects([{k: v.cpu() for k, v in o.items()} for o in outputs])
                   for out in part]
    logprobs = torch.full((total,), torch.nan, dtype=torch.float64)
    tokens = torch.zeros(total, dtype=torch.long)
    for out in outputs:
        logprobs[out["index"]] = out["logprob"].double().cpu()
        tokens[out["index"]] = out["tokens"].cpu()
    return logprobs, tokens


def _rows(tokenizer, max_length: int, share_prefix: bool, items: list[tuple[int, Pair]]) -> list:
    """One chunk's pairs as scoring rows (prefix-shared, or one padded row each) carrying the pairs' indices."""
    if share_prefix:
        # A row is at most max_length tokens long: attention with an explicit mask grows with the square of the
        # row, so a row holding all K candidates of a long prompt costs more than it saves (measured on CPU).
        try:
            rows = group_by_prompt(tokenizer, [pair for _, pair in items], max_length, row_tokens=max_length,
                                   max_targets=len(items))
        except CutPair as cut:
            raise CutPair(items[cut.position][0], max_length) from None
        for row in rows:
            row.indices = [items[i][0] for i in row.indices]
        return rows
    encoded: list[Encoded] = []
    for index, (prompt, target) in items:
        item = encode_pair(tokenizer, prompt, target, max_length)
        if item is None or (isinstance(target, str) and item.input_ids[-1] != tokenizer.eos_token_id):
            raise CutPair(index, max_length)
        item.index = index
        encoded.append(item)
    return encoded


class _ChunkBatches(IterableDataset):
    """This rank's batches, chunk after chunk: each chunk's rows longest first, grouped under the token budget,
    and shared out over the ranks (`_rank_share`). Every rank reads every chunk, so all ranks run the same number of
    forward passes, which FSDP's collective ones need."""

    def __init__(self, chunks: Sequence[Callable[[], list]], to_rows: Callable[[list], list], budget: int) -> None:
        self.chunks, self.to_rows, self.budget = chunks, to_rows, budget

    def __iter__(self) -> Iterator[list]:
        for chunk in self.chunks:
            items = chunk()
            if items:
                yield from _rank_share(token_batches(sorted(self.to_rows(items), key=len, reverse=True), self.budget))


def _rank_share(batches: list) -> list:
    """This rank's batches in a multi-process run: every world_size-th, topped up with repeats so that all ranks
    run the same number of forward passes (FSDP's are collective); a repeat rewrites the same scores."""
    world = distributed.world_size()
    if world == 1 or not batches:
        return batches
    mine = batches[distributed.rank()::world] or batches[:1]
    return mine + [mine[-1]] * (-(-len(batches) // world) - len(mine))
