"""Batches sized by token positions, the unit memory is spent in: one rule for generation (`generation/hf.py`:
prompt + new tokens per row) and for scoring (`runner/scoring.py`: the row's own length)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Row = TypeVar("Row")


def token_batches(rows: Sequence[Row], budget: int, width: Callable[[Any], int] = len) -> list[list[Row]]:
    """Consecutive rows of a widest-first list grouped so that a padded batch (rows × its first, widest row's
    `width`) holds at most `budget` token positions; a row wider than the budget is a batch of its own."""
    batches: list[list[Any]] = []
    for row in rows:
        if not batches or (len(batches[-1]) + 1) * width(batches[-1][0]) > budget:
            batches.append([])
        batches[-1].append(row)
    return batches
