"""EM's rationale candidates: q_φ's samples as the engine generated them, why a sample has no comparable density
(its flaw), and their scores under p_θ and q_φ (batched `Trainer.predict` through `runner.scoring`).

Candidates are streamed (`generation/streamed.py`): each rank writes the shards it generated — text, the sampled
token ids, whether the sample finished — to `<dir>/shard_*.jsonl`, and everything after reads them back a shard at a
time: the scoring passes (`runner.scoring.score_chunks`), the E-step's selected items, the M-step's z̃. No process
holds every candidate's token ids, and none are gathered to every rank: only the [N, K] scores are
(bench/em_memory.py measures the stage's peak memory against the number of pairs).

Used by the E-step (weights), the M-step (z̃) and the held-out bound of `loop.py`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.jsonl import iter_json_rows
from promptcot_pl.data.prompts import MARKERS, prompt_model_example, rationale_model_example
from promptcot_pl.data.records import Triple
from promptcot_pl.generation.engine import Completion
from promptcot_pl.generation.streamed import checkpoint_tag, generate_shards
from promptcot_pl.runner.context import StageContext
from promptcot_pl.runner.scoring import score_chunks, score_pairs
from promptcot_pl.trainer import training_dtype


class Formats(NamedTuple):
    """The prompt formats of p_θ and q_φ (their tokenizers do not change over EM iterations)."""

    p: PromptFormat
    q: PromptFormat


def p_pair(f: Formats, t: Triple, z: str) -> tuple[str, str]:
    """p_θ's (prompt, target) for the triple with rationale `z`: c → (z, x)."""
    return prompt_model_example(f.p, t.concepts, t.level, z, t.problem, t.domain)


def q_pair(f: Formats, t: Triple, z: str) -> tuple[str, str]:
    """q_φ's (prompt, target) for the triple with rationale `z`: (c, x) → z."""
    return rationale_model_example(f.q, t.concepts, t.level, t.problem, z, t.domain)


@dataclass(frozen=True)
class Candidate:
    """A rationale as q_φ sampled it: its decoded text and the engine's token ids (through EOS when finished), kept
    as they travel in shard files (`pack_ids`) and unpacked only where they are scored or trained on."""

    text: str
    packed_ids: str
    finished: bool

    @property
    def ids(self) -> list[int]:
        return np.frombuffer(base64.b64decode(self.packed_ids), dtype=np.int32).tolist()

    @property
    def flaw(self) -> str | None:
        """Why this sample has no comparable density (None: it is valid)."""
        if not self.finished:
            return "truncated"
        if any(marker in self.text for marker in MARKERS):
            return "marker"
        if not self.text.strip() or self.text != self.text.strip():
            return "malformed"
        return None


FLAWS = ("truncated", "marker", "malformed")


@dataclass(frozen=True)
class CandidateShards:
    """`k` candidates for each of `n_pairs` pairs, in shard files (rows: pair, k, text, ids, finished)."""

    paths: tuple[Path, ...]
    n_pairs: int
    k: int

    def read(self, path: Path) -> list[tuple[int, int, Candidate]]:
        """(pair index, sample index, candidate) of one shard."""
        return [(row["pair"], row["k"], Candidate(row["text"], row["ids"], row["finished"]))
                for _, row in iter_json_rows(path)]

    def __iter__(self) -> Iterator[tuple[int, int, Candidate]]:
        for path in self.paths:
            yield from self.read(path)

    @cached_property
    def flaws(self) -> list[list[str | None]]:
        """[N][K] flaw of every candidate (None: valid)."""
        out: list[list[str | None]] = [[None] * self.k for _ in range(self.n_pairs)]
        for i, j, candidate in self:
            out[i][j] = candidate.flaw
        return out


def pack_ids(ids: Sequence[int]) -> str:
    """Token ids as base64 of int32s: a shard row's ids parse as one string, not as thousands of ints."""
    return base64.b64encode(np.asarray(ids, dtype=np.int32).tobytes()).decode()


def sample(engine, f: Formats, pairs: list[Triple], n: int, temperature: float, ctx: StageContext, seed: int,
           out_dir: Path, model: Path) -> CandidateShards:
    """`n` rationales per pair from the engine serving q_φ (`model`; top-p 1, no top-k), at most
    `em.max_rationale_tokens`, streamed to shards under `out_dir` (reused when a resumed run finds them written by
    the same weights)."""
    sampling = SamplingConfig(n=n, temperature=temperature, top_p=1.0, top_k=0,
                              max_new_tokens=ctx.cfg.em.max_rationale_tokens, seed=seed)

    def rows(start: int, groups: list[list[Completion]]) -> Iterator[dict]:
        for i, group in enumerate(groups, start=start):
            yield from ({"pair": i, "k": k, "text": c.text, "ids": pack_ids(c.token_ids),
                         "finished": c.finish_reason == "stop"} for k, c in enumerate(group))

    prompts = [q_pair(f, t, "")[0] for t in pairs]
    paths = generate_shards(engine, prompts, sampling, out_dir, rows, ctx.cfg.engine.shard_prompts,
                            desc=f"em {out_dir.parent.name}/{out_dir.name}", model=checkpoint_tag(model))
    return CandidateShards(tuple(paths), len(pairs), n)


def first_texts(shards: CandidateShards, valid_only: bool = True) -> list[str | None]:
    """Each pair's first candidate's text (z̃ of the M-step, the held-out greedy z); with `valid_only`, None where
    it is flawed."""
    out: list[str | None] = [None] * shards.n_pairs
    for i, j, candidate in shards:
        if j == 0 and (candidate.flaw is None or not valid_only):
            out[i] = candidate.text
    return out


def flaw_shares(flaws: list[list[str | None]], prefix: str) -> dict[str, float]:
    """The share of candidates with each flaw, as `<prefix>truncated_share`, …"""
    flat = [flaw for group in flaws for flaw in group]
    return {f"{prefix}{flaw}_share": sum(x == flaw for x in flat) / max(len(flat), 1) for flaw in FLAWS}


def token_budget(ctx: StageContext) -> int:
    """Tokens a (prompt, rationale, problem) sequence may take: the pair's own (checked by `_fitting`) plus the
    rationale's, twice over — p_θ scores a sampled rationale from its decoded text, which its tokenizer may cut
    into more tokens than the `em.max_rationale_tokens` q_φ generated."""
    return ctx.cfg.data.max_length + 2 * ctx.cfg.em.max_rationale_tokens


def score(ctx: StageContext, model: Path,
          pairs: Sequence[tuple[str, str | Sequence[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    with ctx.engines.released(f"scoring by {where(ctx, model)}", kind="scoring"):
        return score_pairs(model, pairs, trainer_cfg=ctx.cfg.trainer, max_length=token_budget(ctx),
                           dtype=training_dtype(ctx.cfg.trainer), root_dir=ctx.stage_dir)


class Scores(NamedTuple):
    """[N, K] log p_θ(z,x|c), log q_φ(z|c,x), their target token counts, and which candidates are valid (invalid
    ones are not scored: −inf / 0 there)."""

    lp: torch.Tensor
    lq: torch.Tensor
    p_tokens: torch.Tensor
    q_tokens: torch.Tensor
    valid: torch.Tensor


def score_candidates(ctx: StageContext, f: Formats, q: Path, p: Path, pairs: list[Triple], shards: CandidateShards,
                     extra_p: Sequence[tuple[str, str]] = ()):
    """`Scores` of the valid candidates (log q on the sampled ids, log p on the text p_θ would write), a shard at a
    time; with `extra_p`, p_θ's scores of those pairs too, from the same pass (each model is loaded once per
    scoring pass)."""
    n, k = shards.n_pairs, shards.k
    valid = torch.tensor([[flaw is None for flaw in group] for group in shards.flaws], dtype=torch.bool)
    valid = valid.view(n, k)

    def p_chunk(path: Path) -> list:
        return [(i * k + j, p_pair(f, pairs[i], z.text)) for i, j, z in shards.read(path) if z.flaw is None]

    def q_chunk(path: Path) -> list:
        return [(i * k + j, (q_pair(f, pairs[i], "")[0], z.ids)) for i, j, z in shards.read(path)
                if z.flaw is None]

    extra = [(n * k + e, pair) for e, pair in enumerate(extra_p)]
    lp, p_tokens = _score(ctx, p, [partial(p_chunk, path) for path in shards.paths] + [lambda: extra], n * k + len(extra))
    lq, q_tokens = (_score(ctx, q, [partial(q_chunk, path) for path in shards.paths], n * k) if valid.any()
                    else (torch.zeros(n * k, dtype=torch.float64), torch.zeros(n * k, dtype=torch.long)))
    flat = valid.flatten()
    scores = Scores(lp[: n * k].masked_fill(~flat, -math.inf).view(n, k), lq.masked_fill(~flat, 0.0).view(n, k),
                    p_tokens[: n * k].masked_fill(~flat, 0).view(n, k), q_tokens.masked_fill(~flat, 0).view(n, k),
                    valid)
    return (scores, lp[n * k:], p_tokens[n * k:]) if extra_p else scores


def _score(ctx: StageContext, model: Path, chunks: list, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    with ctx.engines.released(f"scoring by {where(ctx, model)}", kind="scoring"):
        return score_chunks(model, chunks, total, trainer_cfg=ctx.cfg.trainer, max_length=token_budget(ctx),
                            dtype=training_dtype(ctx.cfg.trainer), root_dir=ctx.stage_dir)


def where(ctx: StageContext, path: Path) -> str:
    return str(path.relative_to(ctx.run_dir)) if path.is_relative_to(ctx.run_dir) else str(path)
