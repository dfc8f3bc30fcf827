"""Verifiable rewards (SPEC §5) with one signature: `reward(completion, problem) -> float | None`.

1.0 when the final `\\boxed{}` answer is equivalent to the reference (math) or the final python code block passes ALL
unit tests (code, each within `verify.code_timeout_s`); 0.0 when it is wrong or has no answer / code at all; None when the checker could not decide
(an equivalence check that timed out or failed to parse, a sandbox that failed) — callers count and exclude
None, never score it as 0. `Rewards` (built from `verify.*`) scores many completions with the batch APIs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from promptcot_pl.config.common import VerifyConfig
from promptcot_pl.verify.code import extract_code, run_many
from promptcot_pl.verify.format import final_text
from promptcot_pl.verify.math import check_many, extract_answer


class Target(Protocol):
    """Any record with a domain and its verifiable target (`Problem`, `Triple`)."""

    domain: str
    answer: str | None
    tests: list[dict[str, str]] | None


def required(problem: Target, field: str) -> Any:
    """`problem.<field>`, which its domain's reward checks against."""
    value = getattr(problem, field)
    if not value:
        raise ValueError(f"problem of domain {problem.domain!r} has no {field!r} to check against")
    return value


def program(completion: str, problem: Target, thinking: bool = False) -> str | None:
    """The program a code completion submits (its final python block, after a think block), None for math or none."""
    return extract_code(final_text(completion, thinking) or "") if problem.domain == "code" else None


def _code_score(verdict) -> float | None:
    if any(t.reason.startswith("sandbox") for t in verdict.tests):
        return None  # the sandbox itself failed: no judgement about the program
    return float(verdict.passed)


def default_workers() -> int:
    """The machine's cores shared by the processes a launcher started on it (LOCAL_WORLD_SIZE)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(1, (os.cpu_count() or 1) // max(local, 1))


@dataclass
class Rewards:
    """The reward function of a stage, with its settings (`verify.*`) and a count of the programs it ran and of
    those that timed out (`timeout_share`: correct programs turned into 0 by a loaded machine show up here)."""

    code_timeout_s: float = 30.0
    workers: int | None = None
    programs: int = 0
    timed_out: int = 0

    @classmethod
    def from_config(cls, cfg: VerifyConfig) -> Rewards:
        return cls(code_timeout_s=cfg.code_timeout_s, workers=cfg.workers)

    def score(self, completions: Sequence[str], problems: Sequence[Target], thinking: bool = False) -> list[float | None]:
        return [reward for reward, _ in self.judge(completions, problems, thinking)]

    def judge(self, completions: Sequence[str], problems: Sequence[Target],
              thinking: bool = False) -> list[tuple[float | None, bool]]:
        """(reward, timed out) per (completion, problem); math checks and sandboxes run in parallel. The graded
        text is `final_text`: a completion with a think block is graded on what follows it only."""
        if len(completions) != len(problems):
            raise ValueError(f"{len(completions)} completions for {len(problems)} problems")
        out: list[tuple[float | None, bool]] = [(0.0, False)] * len(completions)
        math_idx, math_pairs, code_idx, code_jobs = [], [], [], []
        for i, (full, problem) in enumerate(zip(completions, problems)):
            text = final_text(full, thinking) or ""
            if problem.domain == "math":
                answer = required(problem, "answer")
                predicted = extract_answer(text)
                if predicted is not None:
                    math_idx.append(i)
                    math_pairs.append((predicted, answer))
            elif problem.domain == "code":
                tests = required(problem, "tests")
                code = program(full, problem, thinking)
                if code is not None:
                    code_idx.append(i)
                    code_jobs.append((code, tests))
            else:
                raise ValueError(f"no reward for domain {problem.domain!r}")
        for i, same in zip(math_idx, check_many(math_pairs, workers=self.workers)):
            out[i] = (None if same is None else float(same), False)
        verdicts = run_many(code_jobs, timeout_s=self.code_timeout_s, workers=self.workers or default_workers())
        for i, verdict in zip(code_idx, verdicts):
            timed_out = "timeout" in verdict.statuses
            out[i] = (_code_score(verdict), timed_out)
            self.programs += 1
            self.timed_out += timed_out
        return out

    def timeout_share(self) -> float | None:
        """Share of the programs run so far with a test that timed out (None: no program ran)."""
        return self.timed_out / self.programs if self.programs else None
