"""Difficulty of a problem set (SPEC §7): a fixed solver's pass rate (lower = harder) and the mean length of its
solutions in tokens (longer = harder), from `n` samples per problem through the engine, checked with issue B's
verifiable rewards (`verify.rewards.score_batch`). Unscorable checks (None) are left out of the pass rate and
counted, never scored 0."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from promptcot_pl.config.schema import SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.prompts import solver_prompt
from promptcot_pl.verify.rewards import Target, score_batch


@dataclass
class Difficulty:
    pass_rate: float  # mean over scorable samples
    mean_tokens: float  # mean generated tokens per solution
    n_problems: int
    unscorable: int


def difficulty(engine, fmt: PromptFormat, problems: Sequence[Target], texts: Sequence[str],
               sampling: SamplingConfig) -> Difficulty:
    """`problems` carry the targets (answer or tests), `texts` the problem statements, in the same order; `fmt` is
    the solver's prompt format."""
    groups = engine.generate([solver_prompt(fmt, t, p.domain) for t, p in zip(texts, problems)], sampling)
    completions = [c for group in groups for c in group]
    targets = [p for p, group in zip(problems, groups) for _ in group]
    rewards = score_batch([c.text for c in completions], targets, fmt.thinking)
    scored = [r for r in rewards if r is not None]
    return Difficulty(pass_rate=statistics.fmean(scored) if scored else float("nan"),
                      mean_tokens=statistics.fmean(c.n_tokens for c in completions) if completions else 0.0,
                      n_problems=len(problems), unscorable=len(rewards) - len(scored))
