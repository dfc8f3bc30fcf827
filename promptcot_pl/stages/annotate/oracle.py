"""The built-in math domain's reference annotator: for a statement in one of the domain's families' wording it
writes the answers an annotator model would (the family's core concepts as a Python list, a level, a thinking
process built from the worked solution), in the release's answer formats, so they pass through the same parsers
as a model's. It plays the part the paper's large instruct annotators play, for corpora of built-in problems;
statements it does not recognise get an answer that fails to parse ("no_list"), like a model's bad answer."""

from __future__ import annotations

import random

from promptcot_pl.domains import math as math_domain
from promptcot_pl.domains.math_oracle import SOLVERS, solve


def _family(problem: str) -> int | None:
    text = " ".join(problem.split())
    return next((i for i, (pattern, _) in enumerate(SOLVERS) if pattern.fullmatch(text)), None)


def concepts_answer(problem: str, k: int, level: str) -> str:
    family = _family(problem)
    if family is None:
        return "I cannot tell which concepts this problem tests."
    core = math_domain.FAMILIES[family](random.Random(0), 0).concepts  # the family's concepts do not depend on rng
    general = [c for c in math_domain.GENERAL_CONCEPTS if c not in core]
    concepts = (list(core) + general)[:k]
    return f"{concepts!r}\nDifficulty Level: {level}"


def rationale_answer(problem: str, concepts: list[str], level: str) -> str:
    solved = solve(problem)
    steps = solved[0].splitlines()[:-1] if solved else []
    # the concepts are in the prompt already: the rationale names the main one and fixes the problem's parameters
    return (f"Thinking Process: A {level} problem on {concepts[0]}. " + " ".join(steps)
            + f" Ask: {' '.join(problem.split())}")
