"""Verifiable rewards (SPEC §5) with one signature: `reward(completion, problem) -> float | None`.

1.0 when the final `\\boxed{}` answer is equivalent to the reference (math) or the final code block passes ALL
unit tests (code); 0.0 when it is wrong or has no answer / code at all; None when the checker could not decide
(an equivalence check that timed out or failed to parse, a sandbox that failed) — callers count and exclude
None, never score it as 0. `score_batch` scores many completions with the batch APIs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from promptcot_pl.verify.code import extract_code, run_many, run_tests
from promptcot_pl.verify.format import final_text
from promptcot_pl.verify.math import check_many, extract_answer, is_equivalent


class Target(Protocol):
    """Any record with a domain and its verifiable target (`Problem`, `Triple`)."""

    domain: str
    answer: str | None
    tests: list[dict[str, str]] | None


def _need(problem: Target, field: str) -> None:
    if not getattr(problem, field):
        raise ValueError(f"problem of domain {problem.domain!r} has no {field!r} to check against")


def math_reward(completion: str, problem: Target) -> float | None:
    _need(problem, "answer")
    predicted = extract_answer(completion)
    if predicted is None:
        return 0.0
    same = is_equivalent(predicted, problem.answer)
    return None if same is None else float(same)


def _code_score(verdict) -> float | None:
    if any(t.reason.startswith("sandbox") for t in verdict.tests):
        return None  # the sandbox itself failed: no judgement about the program
    return float(verdict.passed)


def code_reward(completion: str, problem: Target, timeout_s: float = 5.0) -> float | None:
    _need(problem, "tests")
    code = extract_code(completion)
    if code is None:
        return 0.0
    return _code_score(run_tests(code, problem.tests, timeout_s=timeout_s))


def reward_fn(domain: str) -> Callable[[str, Target], float | None]:
    match domain:
        case "math":
            return math_reward
        case "code":
            return code_reward
    raise ValueError(f"no reward for domain {domain!r}; domains are 'math' and 'code'")


def score_batch(completions: Sequence[str], problems: Sequence[Target], thinking: bool = False) -> list[float | None]:
    """Rewards for (completion, problem) pairs, math checks and sandboxes run in parallel. With `thinking`, only
    the text after the first `</think>` is graded (a completion that never closed its thoughts scores 0)."""
    if len(completions) != len(problems):
        raise ValueError(f"{len(completions)} completions for {len(problems)} problems")
    scores: list[float | None] = [0.0] * len(completions)
    math_idx, math_pairs, code_idx, code_jobs = [], [], [], []
    for i, (full, problem) in enumerate(zip(completions, problems)):
        text = final_text(full, thinking) or ""
        if problem.domain == "math":
            _need(problem, "answer")
            predicted = extract_answer(text)
            if predicted is not None:
                math_idx.append(i)
                math_pairs.append((predicted, problem.answer))
        elif problem.domain == "code":
            _need(problem, "tests")
            code = extract_code(text)
            if code is not None:
                code_idx.append(i)
                code_jobs.append((code, problem.tests))
        else:
            raise ValueError(f"no reward for domain {problem.domain!r}")
    for i, same in zip(math_idx, check_many(math_pairs)):
        scores[i] = None if same is None else float(same)
    for i, verdict in zip(code_idx, run_many(code_jobs)):
        scores[i] = _code_score(verdict)
    return scores
