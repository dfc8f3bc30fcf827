"""LightningDataModule for supervised (prompt → target) fits: tokenized once, padded or exactly packed batches."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import lightning as L
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from promptcot_pl.data.collate import (
    Encoded,
    encode_pair,
    pack_examples,
    packed_batch,
    pad_batch,
    target_count,
)
from promptcot_pl.data.sharding import sharded_loader


class PairDataModule(L.LightningDataModule):
    """Train/validation (prompt, target) pairs, shuffled by `seed` + epoch. `batch_size` counts examples: with
    `packing`, a step takes the number of packed rows that hold `batch_size` examples on average (`rows_per_batch`),
    so packing changes how examples are laid out, not how many a step learns from (tests/test_packing_batches.py)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, train: Sequence[tuple[str, str]],
                 val: Sequence[tuple[str, str]], batch_size: int, max_length: int, packing: bool = False,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.tokenizer, self.batch_size, self.max_length, self.seed = tokenizer, batch_size, max_length, seed
        self.packing, self.num_workers = packing, num_workers
        self.train_pairs, self.val_pairs = list(train), list(val)
        self.dropped = 0

    def _encode(self, pairs: Sequence[tuple[str, str]]) -> list[Encoded]:
        encoded = [encode_pair(self.tokenizer, p, t, self.max_length) for p, t in pairs]
        self.dropped += sum(e is None for e in encoded)
        return [e for e in encoded if e is not None]

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_items"):
            return
        self.dropped = 0
        train, val = self._encode(self.train_pairs), self._encode(self.val_pairs)
        if not train:
            raise ValueError("no training example has a target token within data.max_length")
        self.train_items = pack_examples(train, self.max_length) if self.packing else train
        self.rows_per_batch = max(1, round(self.batch_size * len(self.train_items) / len(train)))
        self.val_items = val  # validation stays unpacked: its metric must not depend on packing
        pad = self.tokenizer.pad_token_id
        self._train_collate = partial(packed_batch if self.packing else pad_batch, pad_id=pad)
        self._val_collate = partial(pad_batch, pad_id=pad)

    # `batch_size` is the global batch: on N processes each takes its part of every batch (data/sharding.py).
    def train_dataloader(self) -> DataLoader:
        window = self.trainer.accumulate_grad_batches if self.trainer is not None else 1
        return sharded_loader(self.train_items, self.rows_per_batch, shuffle=True, seed=self.seed,
                              collate=self._train_collate, num_workers=self.num_workers,
                              counts=[target_count(item) for item in self.train_items], window=window)

    def val_dataloader(self) -> DataLoader:
        return sharded_loader(self.val_items, self.batch_size, shuffle=False, seed=self.seed,
                              collate=self._val_collate, num_workers=self.num_workers)
