"""Resumable outer-loop steps: EM iterations (`em/iter_NNN/`) and self-play rounds (`selfplay/round_NNN/`).

A step is finished when its directory holds `DONE`; a rerun walks the same steps and skips the finished ones. A
finished step's metrics go out in this order: the curve point to MLflow, `metrics.json`, `DONE`, the line of
`history.jsonl` — a kill between the first two re-logs the point on rerun (the tracker drops the repeat), while
the other order would lose it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from promptcot_pl.data.jsonl import write_jsonl
from promptcot_pl.runner.context import StageContext, mark_done, write_json


@dataclass(frozen=True)
class Step:
    index: int
    dir: Path

    @property
    def done(self) -> bool:
        return (self.dir / "DONE").is_file()


class ResumableSteps:
    """Steps 0..last under `root`, named `<dir_prefix>_NNN`; `history` holds the finished steps' metrics, each
    with `key` (e.g. "iteration") = its index. `rename` maps metric names to the keys logged to MLflow (a
    variant's prefix)."""

    def __init__(self, ctx: StageContext, root: Path, key: str, dir_prefix: str, last: int,
                 rename: Callable[[str], str] = lambda name: name) -> None:
        self.ctx, self.root, self.key, self.dir_prefix, self.last, self.rename = ctx, root, key, dir_prefix, last, rename
        self.history_path = root / "history.jsonl"
        self.history: list[dict[str, float]] = ([json.loads(line) for line in self.history_path.read_text().splitlines()]
                                                if self.history_path.is_file() else [])
        # curves logged before a restart are still curves: the pipeline leaves them out of the stage's summary
        ctx.curves.update(rename(k) for h in self.history for k in h if k != key)

    def __iter__(self) -> Iterator[Step]:
        for index in range(self.last + 1):
            yield Step(index, self.root / f"{self.dir_prefix}_{index:03d}")

    def finish(self, step: Step, metrics: dict[str, float]) -> None:
        self.ctx.log_step({self.rename(k): v for k, v in metrics.items()}, step=step.index)
        write_json(step.dir / "metrics.json", {self.key: step.index, **metrics})
        mark_done(step.dir / "DONE")
        self.history.append({self.key: step.index, **metrics})
        write_jsonl(self.history_path, self.history)
