"""Probability and statistics: dice, means. (Families of the built-in math domain: see `domains/math/__init__.py`.)"""

from __future__ import annotations

import random

import sympy as sp

from promptcot_pl.domains.math.item import MathItem


def dice_probability(rng: random.Random, level: int) -> MathItem:
    dice = 2 + (level == 2)
    target = rng.randint(dice + 1, 6 * dice - 1)
    from itertools import product

    hits = sum(1 for roll in product(range(1, 7), repeat=dice) if sum(roll) == target)
    ans = sp.Rational(hits, 6**dice)
    return MathItem(
        ["probability", "sample spaces", "counting outcomes"],
        f"Roll {dice} fair dice; {hits} of the {6 ** dice} equally likely outcomes sum to {target}. "
        f"Ask for that probability as a fraction.",
        f"{dice} fair six-sided dice are rolled. What is the probability that the sum is ${target}$?",
        ans, [f"{hits} of the ${6 ** dice}$ outcomes sum to ${target}$.", f"The probability is ${sp.latex(ans)}$."])


def missing_value_mean(rng: random.Random, level: int) -> MathItem:
    n = rng.randint(4, 6 + 2 * level)
    values = [rng.randint(50, 100) for _ in range(n - 1)]
    mean = rng.randint(max(values) - 10, max(values) + 5)
    ans = sp.Integer(mean * n - sum(values))
    return MathItem(
        ["arithmetic mean", "averages", "working backwards"],
        f"Fix the mean {mean} of {n} scores; {n - 1} of them are {values}. The missing one is {mean}*{n} minus their sum.",
        f"The mean of {n} test scores is ${mean}$. Of them, {n - 1} are {', '.join(map(str, values))}. "
        f"What is the remaining score?",
        ans, [f"Total $= {mean}\\cdot {n} = {mean * n}$; known sum $= {sum(values)}$.", f"Missing score $= {ans}$."])
