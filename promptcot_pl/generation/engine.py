"""The generation interface every sampling stage uses: `Engine.generate(prompts, sampling)`, and the seeding rule
both engines follow (`prompt_seed`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import torch

from promptcot_pl.config import SamplingConfig

FinishReason = Literal["stop", "length"]


@dataclass
class Completion:
    text: str  # decoded, special tokens removed, cut before the first stop string
    token_ids: list[int] = field(default_factory=list)  # generated tokens (through EOS or the stop string)
    logprob: float | None = None  # sum of log p(token) under the model over token_ids, when asked for
    token_logprobs: list[float] | None = None  # log p of each of token_ids (the same request), summing to logprob
    finish_reason: FinishReason = "length"  # "stop": EOS or a stop string; "length": max_new_tokens reached
    n_tokens: int = 0  # len(token_ids); kept when the ids are dropped (generation/streamed.py)

    def __post_init__(self) -> None:
        self.n_tokens = self.n_tokens or len(self.token_ids)


def prompt_seed(seed: int, index: int, n: int) -> int:
    """The seed of the prompt at `index` (its position in the whole job) in a call seeded `seed` that draws `n`
    samples per prompt; its sample k draws from the stream seeded `prompt_seed + k` (vLLM's rule for the samples of
    one request: seed + k). A call's seeds are consecutive blocks of n above a base scrambled from `seed`, so no two
    samples of a call share a stream — even in the low 32 bits, all that a CPU generator (mt19937) keeps — and calls
    with nearby seeds do not repeat each other's streams. The same call gives the same samples, however the prompts
    are split into batches, shards or ranks (tests/test_generation_hf.py, tests/test_generation_vllm.py)."""
    base = int.from_bytes(hashlib.blake2b(str(seed).encode(), digest_size=8).digest(), "little") >> 2
    return (base + index * n) % 2**62


class Engine(Protocol):
    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, local: bool = False,
                 indices: Sequence[int] | None = None) -> list[list[Completion]]:
        """`sampling.n` completions for each prompt, in prompt order. In a multi-process run every rank calls it
        with the same prompts and gets all completions, the work split between them; `local=True`: this rank
        alone generates all of `prompts` (`generation/streamed.py` gives each rank shards of its own). `indices`:
        each prompt's position in the whole job, which seeds it (`prompt_seed`; default: its position here)."""
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

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, local: bool = False,
                 indices: Sequence[int] | None = None) -> list[list[Completion]]:
        return self.engine.generate(prompts, sampling, local=local, indices=indices)

    def push(self, weights: Mapping[str, torch.Tensor], label: str, export: Callable[[Path], str | Path]) -> str:
        """Serve in-memory `weights` from now on: in place where the engine loads weights (`load_weights`), else
        through a checkpoint `export(dir)` writes and a `refresh`. (An engine's optional `load_weights(state_dict)`
        serves a state dict of its architecture without a checkpoint on disk: `HFEngine`'s copies it in.) `label` names them (`path` is then no
        directory: a later `serve(path)` reloads). Returns how they were loaded, for the log."""
        if hasattr(self.engine, "load_weights"):
            self.engine.load_weights(weights)
            how = "in place"
        else:
            target = Path(export(Path(label)))
            self.engine.refresh(target)
            how = f"through {target}"
        self.path = Path(label)
        return how

    def sleep(self) -> str:
        return self.engine.sleep()

    def close(self) -> None:
        self.engine.close()


class DataParallelEngine:
    """One engine per rank of a multi-process run, each generating its share of the prompts (every
    world_size-th); every rank gets all completions back in prompt order. Each prompt is seeded by its index in the
    whole call (`prompt_seed`), so the completions do not depend on how the prompts were split."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, local: bool = False,
                 indices: Sequence[int] | None = None) -> list[list[Completion]]:
        from promptcot_pl.distributed import sharded_map

        if local:
            return self.engine.generate(prompts, sampling, indices=indices)
        numbered = list(zip(range(len(prompts)) if indices is None else indices, prompts))
        return sharded_map(lambda part: self.engine.generate([p for _, p in part], sampling,
                                                             indices=[i for i, _ in part]), numbered)

    def refresh(self, checkpoint_dir: str | Path) -> None:
        self.engine.refresh(checkpoint_dir)

    def __getattr__(self, name: str):
        if name == "load_weights" and hasattr(self.engine, "load_weights"):  # each rank loads its own copy
            return self.engine.load_weights
        raise AttributeError(name)

    def sleep(self) -> str:
        return self.engine.sleep()

    def close(self) -> None:
        self.engine.close()
