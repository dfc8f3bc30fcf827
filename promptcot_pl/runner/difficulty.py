"""Difficulty of a problem set (SPEC §7): a fixed solver's pass rate (lower = harder) and the mean length of its
solutions in tokens (longer = harder), from `n` samples per problem through the engine, checked with issue B's
verifiable rewards (`verify.rewards.Rewards`), overall and per difficulty level.

A wrong, missing, overlong or unparsable answer scores 0. Unscorable (None) means only that the reference or the
checker failed; such samples are left out of the pass rate and their share is reported beside it
(`unscorable_share`), so an accuracy never hides how much of the set it covers.

Samples are streamed (`generation/streamed.py`): the rank that generates a shard of problems judges it and writes
one row per sample (reward, tokens, text) to `<out_dir>/shard_*.jsonl`; the pass rates are computed from those rows.
No completion's token ids are gathered to every rank, and each sample is judged once, not on every rank.
The shards are bound to the served weights (`model`): a resumed stage reuses what the same weights generated."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.prompts import solver_prompt
from promptcot_pl.generation.engine import Completion
from promptcot_pl.generation.streamed import checkpoint_tag, generate_shards, iter_rows
from promptcot_pl.verify.rewards import Rewards, Target, program


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


def judged_samples(engine, fmt: PromptFormat, problems: Sequence[Target], texts: Sequence[str],
                   sampling: SamplingConfig, rewards: Rewards, out_dir: Path, shard_prompts: int,
                   model: str | Path = "") -> list[Path]:
    """`sampling.n` samples per problem, judged where they were generated, as shard files of rows: problem (its
    index), sample, reward, timed_out, program (whether code ran), n_tokens, finish_reason, text. `model`: the
    served checkpoint (its shards are not reused for other weights)."""
    def rows(start: int, groups: list[list[Completion]]) -> Iterator[dict]:
        flat = [(i, k, c) for i, group in enumerate(groups, start=start) for k, c in enumerate(group)]
        verdicts = rewards.judge([c.text for _, _, c in flat], [problems[i] for i, _, _ in flat], fmt.thinking)
        for (i, k, c), (reward, timed_out) in zip(flat, verdicts):
            yield {"problem": i, "sample": k, "reward": reward, "timed_out": timed_out,
                   "program": program(c.text, problems[i], fmt.thinking) is not None, "n_tokens": c.n_tokens,
                   "finish_reason": c.finish_reason, "text": c.text}

    prompts = [solver_prompt(fmt, t, p.domain) for t, p in zip(texts, problems)]
    tag = checkpoint_tag(model) if model else ""
    return generate_shards(engine, prompts, sampling, out_dir, rows, shard_prompts, desc=f"judge {out_dir.name}",
                           model=tag)


def difficulty(engine, fmt: PromptFormat, problems: Sequence[Target], texts: Sequence[str],
               sampling: SamplingConfig, rewards: Rewards | None, out_dir: Path, shard_prompts: int,
               model: str | Path = "") -> Difficulty:
    """`problems` carry the targets (answer or tests), `texts` the problem statements, in the same order; `fmt` is
    the solver's prompt format; samples are streamed to `out_dir` (`judged_samples`)."""
    judge = replace(rewards or Rewards(), programs=0, timed_out=0)
    shards = judged_samples(engine, fmt, problems, texts, sampling, judge, out_dir, shard_prompts, model)
    scores: list[float | None] = []
    tokens: list[int] = []
    per_level: dict[str, list[float | None]] = defaultdict(list)
    programs = timed_out = 0
    for row in iter_rows(shards):  # numbers kept, texts dropped: a shard at a time
        scores.append(row["reward"])
        tokens.append(row["n_tokens"])
        programs += row["program"]
        timed_out += row["timed_out"]
        level = getattr(problems[row["problem"]], "level", None)
        if level:
            per_level[level].append(row["reward"])
    return Difficulty(pass_rate=_mean(scores), mean_tokens=statistics.fmean(tokens) if tokens else 0.0,
                      n_problems=len(problems), unscorable=sum(r is None for r in scores), n_samples=len(scores),
                      by_level={level: _mean(values) for level, values in sorted(per_level.items())},
                      code_timeout_share=timed_out / programs if programs else None)
