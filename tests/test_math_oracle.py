"""The math domain's reference solver: it recomputes every seed answer, solves new numbers in a family's wording,
and refuses unknown or hostile statements quickly."""

import time

import pytest

from promptcot_pl.data.records import Problem
from promptcot_pl.domains import build_domain
from promptcot_pl.domains.math_oracle import solve
from promptcot_pl.verify.format import invalid_reason
from tests.reference import reward


def test_it_recomputes_every_seed_answer():
    triples = build_domain("math", 1000, seed=11)
    for t in triples:
        solution, answer = solve(t.problem)
        assert answer == t.answer, t.problem
        assert invalid_reason(solution, "math") is None


@pytest.mark.parametrize("problem, answer", [
    ("Solve for $x$: $7x -4 = 2x +11$.", "3"),  # (11 + 4) / (7 - 2)
    ("Let $r$ and $s$ be the roots of $x^{2} + x - 6 = 0$. Find $r^2+s^2$.", "13"),  # 1 + 12
    ("A right triangle has legs of length $5$ and $12$. Find the perimeter of the triangle.", "30"),
    ("2 fair six-sided dice are rolled. What is the probability that the sum is $7$?", "\\frac{1}{6}"),
    ("What is the sum of the digits of $10$ when it is written in base $2$?", "2"),  # 1010
    ("$100$ marbles are shared between two friends in the ratio $1:3$. How many marbles does the friend with the "
     "larger share get?", "75"),
])
def test_new_numbers_in_a_familys_wording(problem, answer):
    solution, got = solve(problem)
    assert got == answer
    assert reward(solution, Problem(id="p", domain="math", problem=problem, answer=answer)) == 1.0


@pytest.mark.parametrize("problem", [
    "What is the sum of the digits of $9^{999999999}$?",
    "How many prime numbers are there between $2$ and $999999999999$, inclusive?",
    "Find the remainder when $7^{999}$ is divided by $0$.",
    "Solve for $x$: $3x +1 = 3x +2$.",
    "Let $r$ and $s$ be the roots of $x^{2}x^{2} = 0$. Find $r^2+s^2$.",
    "What is the capital of France?",
    "",
])
def test_unknown_or_hostile_statements_get_none_quickly(problem):
    start = time.perf_counter()
    assert solve(problem) is None
    assert time.perf_counter() - start < 1.0
