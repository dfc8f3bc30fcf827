"""Difficulty of a problem set (SPEC §7): a fixed solver's pass rate (lower = harder) and the mean length of its
solutions in tokens (longer = harder), from `n` samples per problem through the engine, checked with issue B's
verifiable rewards (`verify.rewards.Rewards`), overall and per difficulty level.

A wrong, missing, overlong or unparsable answer scores 0 (REVIEW M2). Unscorable (None) now means only that the
reference or the checker failed; such samples are left out of the pass rate and their share is reported beside
it (`unscorable_share`), so an accuracy never hides how much of the set it covers."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.prompts import solver_prompt
from promptcot_pl.verify.rewards import Rewards, Target


@dataclass
class Difficulty:
    pass_rate: float  # mean over scorable samples
    mean_tokens: float  # mean generated tokens per solution
    n_problems: int
    unscorable: int  # samples whose reference or checker failed
    n_samples: int = 0
    by_level: dict[str, float] = field(default_factory=dict)  # pass rate per problem level, when problems have one
    code_timeout_share: float | None = None  # share of the programs run with a test that timed out (code only)

    @property
    def unscorable_share(self) -> float:
        return self.unscorable / self.n_samples if self.n_samples else 0.0

    def metrics(self, prefix: str) -> dict[str, float]:
        """`prefix` (the accuracy's key), `prefix/unscorable_share` and `prefix/<level>` ("level_1" for "Level 1") for MLflow."""
        out = {prefix: self.pass_rate, f"{prefix}/unscorable_share": self.unscorable_share}
        out.update({f"{prefix}/{level_key(level)}": rate for level, rate in self.by_level.items()})
        if self.code_timeout_share is not None:
            out[f"{prefix}/code_timeout_share"] = self.code_timeout_share
        return out


def level_key(level: str) -> str:
    """A level as a metric-name part: "AMC 12" → "amc_12"."""
    return re.sub(r"[^a-z0-9]+", "_", level.lower()).strip("_") or "none"


def _mean(values: Sequence[float | None]) -> float:
    scored = [v for v in values if v is not None]
    return statistics.fmean(scored) if scored else float("nan")


def difficulty(engine, fmt: PromptFormat, problems: Sequence[Target], texts: Sequence[str],
               sampling: SamplingConfig, rewards: Rewards | None = None) -> Difficulty:
    """`problems` carry the targets (answer or tests), `texts` the problem statements, in the same order; `fmt` is
    the solver's prompt format."""
    groups = engine.generate([solver_prompt(fmt, t, p.domain) for t, p in zip(texts, problems)], sampling)
    completions = [c for group in groups for c in group]
    targets = [p for p, group in zip(problems, groups) for _ in group]
    judge = replace(rewards or Rewards(), programs=0, timed_out=0)  # this set's own timeout count
    scores = judge.score([c.text for c in completions], targets, fmt.thinking)
    per_level: dict[str, list[float | None]] = defaultdict(list)
    for problem, reward in zip(targets, scores):
        level = getattr(problem, "level", None)
        if level:
            per_level[level].append(reward)
    return Difficulty(pass_rate=_mean(scores),
                      mean_tokens=statistics.fmean(c.n_tokens for c in completions) if completions else 0.0,
                      n_problems=len(problems), unscorable=sum(r is None for r in scores), n_samples=len(scores),
                      by_level={level: _mean(values) for level, values in sorted(per_level.items())},
                      code_timeout_share=judge.timeout_share())
