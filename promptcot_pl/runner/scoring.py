"""Batched, no-grad scoring of (prompt, target) pairs with `Trainer.predict`: summed target log-prob per pair.
In a multi-process run each rank scores its share of the batches and every rank gets all scores.

Under the same `build_trainer` strategy as every fit, never one candidate per forward pass. By default pairs that
share a prompt (the K candidates of an EM pair) are scored in prefix-shared rows, the prompt encoded once
(`data/shared_prefix.py`); `share_prefix=False` (`trainer.share_prefix`) scores each pair in its own row of a length-sorted, right-padded
batch. Both are exact for a causal LM; tests check they agree with one-at-a-time scoring to 1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import cast

import torch
from torch.utils.data import DataLoader

from promptcot_pl import distributed
from promptcot_pl.config import TrainerConfig
from promptcot_pl.data.collate import Encoded, encode_pair, pad_batch
from promptcot_pl.data.shared_prefix import SharedPrefix, group_by_prompt, shared_prefix_batch
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import SequenceScorer
from promptcot_pl.trainer import build_trainer, meta_init


def score_pairs(model_path: str | Path, pairs: Sequence[tuple[str, str | Sequence[int]]], *, trainer_cfg: TrainerConfig,
                max_length: int, dtype: str = "float32", root_dir: str | Path = ".",
                share_prefix: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(target | prompt) summed over target tokens, number of target tokens), both shaped [len(pairs)].
    `share_prefix` None: `trainer_cfg.share_prefix`. A target given as token ids is scored on exactly those ids
    (an engine's sample: its log q is the proposal's own density, REVIEW M1), a text target + EOS as tokenised.
    A batch holds at most `trainer_cfg.score_tokens` token positions (rows × its longest row), at least one row."""
    tokenizer = load_tokenizer(model_path)
    if share_prefix is None:
        share_prefix = trainer_cfg.share_prefix
    rows: list[SharedPrefix] | list[Encoded]
    if share_prefix:
        # A row is at most max_length tokens long: attention with an explicit mask grows with the square of the
        # row, so a row holding all K candidates of a long prompt costs more than it saves (measured on CPU).
        rows = group_by_prompt(tokenizer, pairs, max_length, row_tokens=max_length, max_targets=len(pairs))
        collate = partial(shared_prefix_batch, pad_id=tokenizer.pad_token_id)
    else:
        encoded: list[Encoded] = []
        for i, (prompt, target) in enumerate(pairs):
            item = encode_pair(tokenizer, prompt, target, max_length)
            if item is None or (isinstance(target, str) and item.input_ids[-1] != tokenizer.eos_token_id):
                raise ValueError(f"pair {i} does not fit in {max_length} tokens; scores of cut sequences would be wrong")
            item.index = i
            encoded.append(item)
        rows = encoded
        collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
    batches = token_batches(sorted(rows, key=len, reverse=True), trainer_cfg.score_tokens)
    # a list of batches is a map-style dataset; batch_size=None hands each one to `collate` whole
    loader: DataLoader = DataLoader(_rank_share(batches), batch_size=None,  # type: ignore[arg-type]
                                    shuffle=False, collate_fn=collate)
    trainer = build_trainer(replace(trainer_cfg, enable_progress_bar=False),
                            max_epochs=1, default_root_dir=root_dir)
    model = load_model(model_path, dtype, empty=meta_init(trainer_cfg))  # empty on FSDP ranks > 0: filled from 0
    outputs = cast(list[dict[str, torch.Tensor]],  # one dict per batch (SequenceScorer.predict_step)
                   trainer.predict(SequenceScorer(model, trainer_cfg.logits_chunk_mib), loader))
    if distributed.world_size() > 1:
        outputs = [out for part in distributed.gather_objects([{k: v.cpu() for k, v in o.items()} for o in outputs])
                   for out in part]
    logprobs = torch.empty(len(pairs), dtype=torch.float64)
    tokens = torch.empty(len(pairs), dtype=torch.long)
    for out in outputs:
        logprobs[out["index"]] = out["logprob"].double().cpu()
        tokens[out["index"]] = out["tokens"].cpu()
    return logprobs, tokens


def _rank_share(batches: list) -> list:
    """This rank's batches in a multi-process run: every world_size-th, topped up with repeats so that all ranks
    run the same number of forward passes (FSDP's are collective); a repeat rewrites the same scores."""
    world = distributed.world_size()
    if world == 1 or not batches:
        return batches
    mine = batches[distributed.rank()::world] or batches[:1]
    return mine + [mine[-1]] * (-(-len(batches) // world) - len(mine))


def token_batches(rows: list, budget: int) -> list[list]:
    """Consecutive rows of a longest-first list grouped so that a padded batch (rows × its first, longest row)
    holds at most `budget` token positions; a row longer than the budget is a batch of its own."""
    batches: list[list] = []
    for row in rows:
        if not batches or (len(batches[-1]) + 1) * len(batches[-1][0]) > budget:
            batches.append([])
        batches[-1].append(row)
    return batches
