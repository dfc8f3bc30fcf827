"""The generation engines a stage holds, with their lifecycle in one place: `open` starts one for a block and
closes it when the block ends (errors and pruned trials included); `released` frees every open engine's memory
for a fit or a scoring pass beside it (asleep in vLLM's sleep mode, or shut down; the next `generate` wakes it
with the newest weights); `summary` says once per EM iteration or self-play round how often that happened.

An engine resident beside FSDP shards and optimizer states is what runs 7B fits out of memory, so every release
is written to the run's log file (`run.log`), and the console gets the one summary line
(tests/test_pipeline.py::test_every_fit_beside_an_engine_runs_with_the_engine_asleep reads both).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from promptcot_pl.config import EngineConfig

log = logging.getLogger("promptcot")


class Engines:
    def __init__(self, cfg: EngineConfig, dtype: str, seed: int) -> None:
        self.cfg, self.dtype, self.seed = cfg, dtype, seed
        self.open_now: list[Any] = []
        self.releases: Counter[str] = Counter()  # since the last `report`, by kind

    @contextmanager
    def open(self, model: str | Path, served: bool = False) -> Iterator[Any]:
        """The engine (`engine.backend`) serving `model` in the inference dtype `model.dtype`, for the block.
        `served`: a `ServedEngine`, which stages that swap checkpoints (EM, self-play) `serve(path)`."""
        from promptcot_pl.generation import ServedEngine, build_engine

        engine = build_engine(self.cfg, model, self.dtype, self.seed)
        self.open_now.append(engine)
        try:
            yield ServedEngine(engine, model) if served else engine
        finally:
            self.open_now.remove(engine)
            engine.close()

    @contextmanager
    def released(self, what: str, kind: Literal["fit", "scoring"] = "fit") -> Iterator[None]:
        """Every open engine frees its memory for the block (`what`: the fit or scoring pass, for the log);
        `engine.release_during_fits=false` keeps them resident."""
        if self.cfg.release_during_fits and self.open_now:
            for engine in self.open_now:
                log.debug("engine asleep during %s: %s", what, engine.sleep())
            self.releases[kind] += 1  # one fit or scoring pass, however many engines it freed
        yield

    def summary(self) -> str:
        """"; engine asleep during N fits and M scoring passes" since the last call ("" when none): the end of the
        console line of an EM iteration or a self-play round."""
        fits, scorings = self.releases["fit"], self.releases["scoring"]
        self.releases.clear()
        parts = [f"{n} {name}{suffix if n != 1 else ''}"
                 for n, name, suffix in ((fits, "fit", "s"), (scorings, "scoring pass", "es")) if n]
        return f"; engine asleep during {' and '.join(parts)}" if parts else ""
