"""The generation interface every sampling stage uses: `Engine.generate(prompts, sampling)`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from promptcot_pl.config import SamplingConfig

FinishReason = Literal["stop", "length"]


@dataclass
class Completion:
    text: str  # decoded, special tokens removed, cut before the first stop string
    token_ids: list[int] = field(default_factory=list)  # generated tokens (through EOS or the stop string)
    logprob: float | None = None  # sum of log p(token) under the model over token_ids, when asked for
    finish_reason: FinishReason = "length"  # "stop": EOS or a stop string; "length": max_new_tokens reached
    n_tokens: int = 0  # len(token_ids); kept when the ids are dropped (generation/streamed.py)

    def __post_init__(self) -> None:
        self.n_tokens = self.n_tokens or len(self.token_ids)


class Engine(Protocol):
    def generate(self, prompts: Sequence[str], sampling: SamplingConfig,
                 local: bool = False) -> list[list[Completion]]:
        """`sampling.n` completions for each prompt, in prompt order. In a multi-process run every rank calls it
        with the same prompts and gets all completions, the work split between them; `local=True`: this rank
        alone generates all of `prompts` (`generation/streamed.py` gives each rank shards of its own)."""
        ...

    def refresh(self, checkpoint_dir: str | Path) -> None:
        """Serve the weights of an HF checkpoint directory (same architecture and tokenizer) from now on."""
        ...

    def sleep(self) -> str:
        """Free the engine's (accelerator) memory until the next `generate`, which serves the newest `refresh`;
        returns how it was freed, for the log."""
        ...

    def close(self) -> None:
        ...


class ServedEngine:
    """An engine plus the checkpoint it serves: `serve(path)` reloads weights only when the path changes.
    Recipes write every trained model to a new directory, so the path identifies the weights."""

    def __init__(self, engine: Engine, path: str | Path) -> None:
        self.engine, self.path = engine, Path(path)

    def serve(self, path: str | Path) -> None:
        if Path(path) != self.path:
            self.engine.refresh(path)
            self.path = Path(path)

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig,
                 local: bool = False) -> list[list[Completion]]:
        return self.engine.generate(prompts, sampling, local=local)

    def sleep(self) -> str:
        return self.engine.sleep()

    def close(self) -> None:
        self.engine.close()


class DataParallelEngine:
    """One engine per rank of a multi-process run, each generating its share of the prompts (every
    world_size-th); every rank gets all completions back in prompt order. Each request is seeded alike, so the
    completions do not depend on how the prompts were split."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig,
                 local: bool = False) -> list[list[Completion]]:
        from promptcot_pl.distributed import sharded_map

        if local:
            return self.engine.generate(prompts, sampling)
        return sharded_map(lambda part: self.engine.generate(part, sampling), prompts)

    def refresh(self, checkpoint_dir: str | Path) -> None:
        self.engine.refresh(checkpoint_dir)

    def sleep(self) -> str:
        return self.engine.sleep()

    def close(self) -> None:
        self.engine.close()
