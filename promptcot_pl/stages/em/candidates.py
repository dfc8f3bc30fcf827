"""EM's rationale candidates: q_φ's samples as the engine generated them, why a sample has no comparable density
(its flaw), and their scores under p_θ and q_φ (batched `Trainer.predict` through `runner.scoring`).

Used by the E-step (weights), the M-step (z̃) and the held-out bound of `loop.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.prompts import MARKERS, prompt_model_example, rationale_model_example
from promptcot_pl.data.records import Triple
from promptcot_pl.runner.context import StageContext
from promptcot_pl.runner.scoring import score_pairs
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
    """A rationale as q_φ sampled it: its decoded text and the engine's token ids (through EOS when finished)."""

    text: str
    ids: tuple[int, ...]
    finished: bool

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


def sample(engine, f: Formats, pairs: list[Triple], n: int, temperature: float, ctx: StageContext,
           seed: int) -> list[list[Candidate]]:
    """`n` rationales per pair from the engine serving q_φ (top-p 1, no top-k), at most `em.max_rationale_tokens`."""
    sampling = SamplingConfig(n=n, temperature=temperature, top_p=1.0, top_k=0,
                              max_new_tokens=ctx.cfg.em.max_rationale_tokens, seed=seed)
    prompts = [q_pair(f, t, "")[0] for t in pairs]
    return [[Candidate(c.text, tuple(c.token_ids), c.finish_reason == "stop") for c in group]
            for group in engine.generate(prompts, sampling)]


def flaw_shares(zs: list[list[Candidate]], prefix: str) -> dict[str, float]:
    """The share of candidates with each flaw, as `<prefix>truncated_share`, …"""
    flat = [z.flaw for group in zs for z in group]
    return {f"{prefix}{flaw}_share": sum(x == flaw for x in flat) / max(len(flat), 1) for flaw in FLAWS}


def token_budget(ctx: StageContext) -> int:
    """Tokens a (prompt, rationale, problem) sequence may take: the pair's own (checked by `_fitting`) plus the
    rationale's, twice over — p_θ scores a sampled rationale from its decoded text, which its tokenizer may cut
    into more tokens than the `em.max_rationale_tokens` q_φ generated."""
    return ctx.cfg.data.max_length + 2 * ctx.cfg.em.max_rationale_tokens


def score(ctx: StageContext, model: Path,
           pairs: Sequence[tuple[str, str | Sequence[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    with ctx.released(f"scoring by {where(ctx, model)}"):
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


def score_candidates(ctx: StageContext, f: Formats, q: Path, p: Path, pairs: list[Triple],
                      zs: list[list[Candidate]], extra_p: Sequence[tuple[str, str]] = ()):
    """`Scores` of the valid candidates (log q on the sampled ids, log p on the text p_θ would write); with
    `extra_p`, p_θ's scores of those pairs too, from the same pass (each model is loaded once per scoring pass:
    REVIEW m19)."""
    shape = (len(pairs), len(zs[0]))
    valid = torch.tensor([[z.flaw is None for z in group] for group in zs], dtype=torch.bool).view(shape)
    flat = [(t, z) for t, group in zip(pairs, zs) for z in group if z.flaw is None]
    lp, p_tokens = score(ctx, p, [p_pair(f, t, z.text) for t, z in flat] + list(extra_p))
    lq, q_tokens = score(ctx, q, [(q_pair(f, t, "")[0], list(z.ids)) for t, z in flat]) if flat else (lp[:0], p_tokens[:0])
    n = len(flat)

    def place(values: torch.Tensor, fill: float) -> torch.Tensor:
        full = torch.full(shape, fill, dtype=values.dtype)
        full[valid] = values
        return full

    scores = Scores(place(lp[:n], -math.inf), place(lq, 0.0), place(p_tokens[:n], 0), place(q_tokens, 0), valid)
    return (scores, lp[n:], p_tokens[n:]) if extra_p else scores


def where(ctx: StageContext, path: Path) -> str:
    return str(path.relative_to(ctx.run_dir)) if path.is_relative_to(ctx.run_dir) else str(path)
