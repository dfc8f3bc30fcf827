"""Log-probs of a round's pairs under a model, by one batched no-grad pass (`runner/scoring.score_pairs`): the
reference's before the fit (cached beside the round, with a digest of the pairs it belongs to) and the trained
policy's after it, for the round-end summary over every pair (`losses/dpo.pair_summary`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from promptcot_pl.config import TrainerConfig
from promptcot_pl.data.atomic import atomic_write
from promptcot_pl.data.shared_prefix import SharedPrefix
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.runner.context import log
from promptcot_pl.runner.scoring import score_pairs
from promptcot_pl.trainer import training_dtype

Scored = tuple[str, list[int]]  # (prompt, completion token ids as trained)


def scored_completions(rows: list[SharedPrefix], prompts: list[str]) -> list[Scored]:
    """(prompt, chosen ids), (prompt, rejected ids) for each row, in row order: exactly the ids the fit trains on
    (whole completions + EOS, or cut after the first differing step). `prompts[k]`: row k's prompt text."""
    return [(prompt, list(target)) for row, prompt in zip(rows, prompts) for target in row.targets]


def digest(flat: list[Scored]) -> str:
    return hashlib.sha256(json.dumps(flat).encode()).hexdigest()


def logprobs(model: Path, flat: list[Scored], trainer: TrainerConfig, max_length: int,
             root_dir: Path) -> torch.Tensor:
    """[n_pairs, 2]: log π(chosen), log π(rejected) under `model`."""
    values, _ = score_pairs(model, flat, trainer_cfg=trainer, max_length=max_length, dtype=training_dtype(trainer),
                            root_dir=root_dir)
    return values.view(-1, 2)


def reference(model: Path, flat: list[Scored], trainer: TrainerConfig, max_length: int, out: Path) -> torch.Tensor:
    """The reference's log-probs, cached in `out/reference_logprobs.pt` with the digest of the pairs they score:
    a rerun reuses them only for the same pairs (a round directory partly deleted gets them anew)."""
    path, key = out / "reference_logprobs.pt", digest(flat)
    if path.is_file():
        saved = torch.load(path)
        if isinstance(saved, dict) and saved.get("digest") == key:
            return saved["logprobs"]
        log.warning("%s belongs to other pairs than this round's: scoring the reference again", path)
    ref = logprobs(model, flat, trainer, max_length, out)
    on_rank_zero(atomic_write, path, lambda tmp: torch.save({"digest": key, "logprobs": ref}, tmp))
    return ref
