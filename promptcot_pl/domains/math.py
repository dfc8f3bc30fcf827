"""The built-in math seed domain: seeded, offline, any size, with sympy-checked answers.

Each triple's concept set holds its family's three core concepts plus two general problem-solving concepts,
in random order, and a level; the rationale fixes every parameter of the problem, and the solution ends in
`\\boxed{answer}` with the answer rendered by `sympy.latex`.
"""

from __future__ import annotations

import hashlib
import random

import sympy as sp

from promptcot_pl.data.records import Triple
from promptcot_pl.domains import math_families as f1
from promptcot_pl.domains import math_families_more as f2

LEVELS = ("AMC 8", "AMC 12", "AIME")
FAMILIES = (
    f1.mod_power, f1.gcd_lcm, f1.linear_equation, f1.linear_system, f1.percentage_change, f1.arithmetic_series,
    f1.geometric_term, f1.committees, f1.word_arrangements, f1.count_primes,
    f2.digit_sum_power, f2.divisor_count, f2.vieta_squares, f2.right_triangle, f2.dice_probability,
    f2.missing_value_mean, f2.base_digit_sum, f2.trailing_zeros, f2.ratio_share, f2.sum_of_squares,
)
GENERAL_CONCEPTS = (
    "case analysis", "pattern recognition", "working backwards", "estimation", "symmetry",
    "invariants", "careful bookkeeping", "simplifying expressions",
)


def answer_text(answer: sp.Expr) -> str:
    return sp.latex(sp.nsimplify(answer))


def build_math(n_items: int, seed: int) -> list[Triple]:
    """`n_items` distinct math triples, the same for the same seed."""
    rng = random.Random(seed)
    out: list[Triple] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n_items:
        attempts += 1
        if attempts > 50 * n_items + 1000:
            raise ValueError(f"math domain: could only make {len(out)} distinct problems, asked for {n_items}")
        family = FAMILIES[rng.randrange(len(FAMILIES))]
        level = rng.randrange(len(LEVELS))
        item = family(rng, level)
        if item.problem in seen:
            continue
        seen.add(item.problem)
        concepts = item.concepts + rng.sample(GENERAL_CONCEPTS, 2)
        rng.shuffle(concepts)
        answer = answer_text(item.answer)
        solution = "\n".join(item.steps + [f"The answer is $\\boxed{{{answer}}}$."])
        digest = hashlib.sha1(item.problem.encode()).hexdigest()[:10]
        out.append(Triple(id=f"math-{digest}", domain="math", concepts=concepts, level=LEVELS[level],
                          rationale=item.rationale, problem=item.problem, answer=answer, solution=solution))
    return out
