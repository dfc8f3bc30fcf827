"""The built-in math seed domain: seeded, offline, any size, with sympy-checked answers.

Each triple's concept set holds its family's three core concepts plus two general problem-solving concepts,
in random order, and a level; the rationale fixes every parameter of the problem, and the solution ends in
`\\boxed{answer}` with the answer rendered by `sympy.latex`.
"""

from __future__ import annotations

import random

import sympy as sp

from promptcot_pl.data.records import Triple
from promptcot_pl.domains.distinct import concept_set, draw_distinct, item_id
from promptcot_pl.domains.math import algebra, combinatorics, geometry, number_theory, probability

LEVELS = ("AMC 8", "AMC 12", "AIME")
# The order is part of the corpus: item i's family is drawn by index, so a new family goes at the end.
FAMILIES = (
    number_theory.mod_power, number_theory.gcd_lcm, algebra.linear_equation, algebra.linear_system,
    algebra.percentage_change, algebra.arithmetic_series, algebra.geometric_term, combinatorics.committees,
    combinatorics.word_arrangements, number_theory.count_primes, number_theory.digit_sum_power,
    number_theory.divisor_count, algebra.vieta_squares, geometry.right_triangle, probability.dice_probability,
    probability.missing_value_mean, number_theory.base_digit_sum, number_theory.trailing_zeros, algebra.ratio_share,
    algebra.sum_of_squares,
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
