"""Batches that mean the same thing on 1 or N processes: `batch_size` is the global batch.

Every rank draws the same seeded permutation each epoch and cuts it into the same global batches; rank r takes
positions r, r + N, ... of each one. So the union of the ranks' step-s batches is exactly the single-process
step-s batch, and with losses normalised by the global count (`modules/reduce.py`) DDP/FSDP gradients equal the
single-process gradient. When a global batch has fewer items than ranks (the last one), the ranks left without an
item get a *padding* copy of one: `PaddedItems` hands it out with `real = False`, and `MarkPadding` turns it
into a row that contributes nothing (labels ignored, weight 0). Every rank therefore runs the same number of
steps, which FSDP requires (its forward pass is collective).

Gradient accumulation: with `window` = A global batches per optimizer step and per-item `counts` (target tokens,
weighted tokens, pairs; or a tuple of counts per item for a loss with several denominators, DPO's pairs and its RPO
term's chosen tokens), every index carries the count of its whole accumulation window — summed over the window's
global batches, real items only — and the collated batch holds it as `window_count`. The modules divide each
micro-batch's summed loss by it (`modules/reduce.py`), so one step's gradient is Σ loss / Σ count over the window,
exactly as one batch A times larger (the mean of micro-batch means differs when their counts do).

Lightning's own DistributedSampler is switched off (`use_distributed_sampler=False` in `build_trainer`): it pads
by repeating real items, which would count them twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from promptcot_pl.data.collate import IGNORE

PAD = -1  # index offset marker: sampler index -1 - i is a padding copy of item i


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's part of each global batch of `batch_size` items (shuffled per epoch when `shuffle`)."""

    def __init__(self, n: int, batch_size: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 seed: int = 0, counts: Sequence[float] | Sequence[tuple[float, ...]] | None = None,
                 window: int = 1) -> None:
        if batch_size < 1 or window < 1:
            raise ValueError("batch_size and window must be at least 1")
        if counts is not None and len(counts) != n:
            raise ValueError(f"{len(counts)} counts for {n} items")
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.counts, self.window = counts, window
        self.skip = 0  # batches of the next epoch already trained on before a resume

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> GlobalBatchSampler:
        """Lightning numbers each epoch (`set_epoch`) on a loader's `sampler` and its `batch_sampler.sampler`, never
        on the batch sampler itself: this one is its own sampler, so every epoch draws its own order
        (tests/test_sharding.py::test_a_fit_draws_a_new_order_every_epoch)."""
        return self

    def resume_after(self, batches: int) -> None:
        """The next pass starts at batch `batches` of its epoch (a fit resumed mid-epoch continues exactly where
        it stopped instead of seeing the epoch's first batches again)."""
        self.skip = batches

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(self.n))
        skip, self.skip = self.skip, 0
        batches = [order[start:start + self.batch_size] for start in range(0, self.n, self.batch_size)]
        for b in range(skip, len(batches)):
            batch = batches[b]
            mine = batch[self.rank::self.world_size] or [PAD - batch[0]]
            if self.counts is not None:  # windows start at batch 0 of the epoch, as Lightning's accumulation does
                first = b - b % self.window
                total = _summed([self.counts[i] for window_batch in batches[first:first + self.window]
                                 for i in window_batch])
                mine = [(i, total) for i in mine]
            yield mine


def _summed(counts: list) -> float | tuple[float, ...]:
    """The sum of plain counts, or the elementwise sum of tuples of counts (a loss with several denominators)."""
    if counts and isinstance(counts[0], tuple):
        return tuple(float(sum(column)) for column in zip(*counts))
    return float(sum(counts))


class PaddedItems(Dataset):
    """`items[i]` for i >= 0; for a padding index (-1 - i) the same item flagged as padding. Yields (item, real)."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int | tuple[int, float]) -> tuple[Any, bool, float | None]:
        index, window = index if isinstance(index, tuple) else (index, None)
        return (self.items[index], True, window) if index >= 0 else (self.items[PAD - index], False, window)


class MarkPadding:
    """A collate function for `PaddedItems` around `collate`: the batch gains `real` [B] (and `window_count`, see the
    module docstring) and padding rows are neutralised — every label ignored and weight 0 — so they add nothing to
    any loss or count. A class, not a closure, so that DataLoader workers started by `spawn` (macOS, CUDA) can
    unpickle it."""

    def __init__(self, collate: Callable[[list[Any]], dict[str, torch.Tensor]]) -> None:
        self.collate = collate

    def __call__(self, triples: list[tuple[Any, bool, float | None]]) -> dict[str, torch.Tensor]:
        batch = self.collate([item for item, _, _ in triples])
        real = torch.tensor([ok for _, ok, _ in triples])
        batch["real"] = real
        if triples[0][2] is not None:
            batch["window_count"] = torch.tensor(triples[0][2], dtype=torch.float32)  # MPS has no fp64
        if not real.all():
            if "labels" in batch:
                batch["labels"][~real] = IGNORE
            if "weight" in batch:
                batch["weight"][~real] = 0.0
        return batch


def sharded_loader(items: Sequence[Any], batch_size: int, *, shuffle: bool, seed: int, collate: Callable,
                   num_workers: int = 0, counts: Sequence[float] | Sequence[tuple[float, ...]] | None = None,
                   window: int = 1) -> DataLoader:
    """A DataLoader over this rank's part of every global batch of `items` (see the module docstring); with
    `counts`, batches carry the `window_count` of their accumulation window of `window` global batches."""
    from promptcot_pl import distributed

    sampler = GlobalBatchSampler(len(items), batch_size, rank=distributed.rank(),
                                 world_size=distributed.world_size(), shuffle=shuffle, seed=seed, counts=counts,
                                 window=window)
    return ResumableLoader(PaddedItems(items), batch_sampler=sampler, collate_fn=MarkPadding(collate),
                           num_workers=num_workers)


class ResumableLoader(DataLoader):
    """A DataLoader whose batch sampler is read at the first batch of a pass, not when Lightning builds the
    iterator: Lightning builds it while it sets the fit up (`estimated_stepping_batches`), before a resumed fit's
    place (`trainer.ResumeMidEpoch`) and the epoch's number are set, and a worker process (`data.num_workers` > 0)
    would start drawing batches then. Pinned by tests/test_trainer_resume.py (a killed fit resumes to the
    uninterrupted weights, with and without a worker process)."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]  # a generator over DataLoader's own iterator
        yield from super().__iter__()
