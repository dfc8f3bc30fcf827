"""The built-in math seed domain: seeded, offline, any size, with sympy-checked answers.

Each triple's concept set holds its family's three core concepts plus two general problem-solving concepts,
in random order, and a level; the rationale fixes every parameter of the problem, and the solution ends in
`\\boxed{answer}` with the answer rendered by `sympy.latex`.
"""

from __future__ import annotations

import random

import sympy as sp

from promptcot_pl.data.records import Triple
from promptcot_pl.domains import math_families as f1
from promptcot_pl.domains import math_families_more as f2
from promptcot_pl.domains.distinct import concept_set, draw_distinct, item_id

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

    def draw():
        family = FAMILIES[rng.randrange(len(FAMILIES))]
        level = rng.randrange(len(LEVELS))
        item = family(rng, level)

        def build() -> Triple:
            concepts = concept_set(item.concepts, GENERAL_CONCEPTS, rng)
            answer = answer_text(item.answer)
            solution = "\n".join(item.steps + [f"The answer is $\\boxed{{{answer}}}$."])
            return Triple(id=item_id("math", item.problem), domain="math", concepts=concepts, level=LEVELS[level],
                          rationale=item.rationale, problem=item.problem, answer=answer, solution=solution)

        return item.problem, build

    return draw_distinct(n_items, "math", draw)
