"""Combinatorics: committees and arrangements. (Families of the built-in math domain: see `domains/math/__init__.py`.)"""

from __future__ import annotations

import random

import sympy as sp

from promptcot_pl.domains.math.item import MathItem


def committees(rng: random.Random, level: int) -> MathItem:
    n = rng.randint(6, 10 + 5 * level)
    k = rng.randint(2, min(5 + level, n - 1))
    ans = sp.binomial(n, k)
    return MathItem(
        ["combinations", "counting principles", "binomial coefficients"],
        f"Choose a committee of {k} from {n} people where order does not matter, so the count is C({n},{k}).",
        f"In how many ways can a committee of ${k}$ be chosen from ${n}$ people?",
        ans, [f"The count is $\\binom{{{n}}}{{{k}}} = {ans}$."])


def word_arrangements(rng: random.Random, level: int) -> MathItem:
    word = rng.choice([["BANANA", "LETTER", "COFFEE", "PEPPER"], ["SUCCESS", "BALLOON", "TOMORROW"],
                       ["MISSISSIPPI", "ABRACADABRA", "COMMITTEE"]][level])
    counts = [word.count(ch) for ch in sorted(set(word))]
    ans = sp.factorial(len(word)) / sp.prod([sp.factorial(c) for c in counts])
    return MathItem(
        ["permutations", "multinomial coefficients", "repeated elements"],
        f"Count distinct arrangements of the letters of {word}; repeated letters with counts {counts} "
        f"force dividing {len(word)}! by their factorials.",
        f"How many distinct arrangements of the letters of the word {word} are there?",
        ans, [f"${len(word)}!$ divided by the factorials of the repeat counts {counts} gives ${ans}$."])
