"""More problem families of the built-in math domain (see `math_families.py` for the contract)."""

from __future__ import annotations

import random

import sympy as sp
from sympy.ntheory.digits import digits as base_digits

from promptcot_pl.domains.math_families import MathItem


def digit_sum_power(rng: random.Random, level: int) -> MathItem:
    base, n = rng.choice([2, 3, 5, 7]), rng.randint(8, 20 + 20 * level)
    value = sp.Integer(base) ** n
    ans = sp.Integer(sum(int(ch) for ch in str(value)))
    return MathItem(
        ["digit sums", "large powers", "place value"],
        f"Expand {base}^{n} = {value} exactly and add its decimal digits.",
        f"What is the sum of the digits of ${base}^{{{n}}}$?",
        ans, [f"${base}^{{{n}}} = {value}$.", f"Its digits add up to ${ans}$."])


def divisor_count(rng: random.Random, level: int) -> MathItem:
    primes = rng.sample([2, 3, 5, 7, 11], 2 + level)
    exps = [rng.randint(1, 3 + level) for _ in primes]
    n = sp.prod([sp.Integer(p) ** e for p, e in zip(primes, exps)])
    ans = sp.divisor_count(n)
    return MathItem(
        ["counting divisors", "prime factorization", "multiplication principle"],
        f"Take N = {n} = {' * '.join(f'{p}^{e}' for p, e in zip(primes, exps))}; the number of divisors is the "
        f"product of (exponent + 1). Ask for the divisor count.",
        f"How many positive divisors does ${n}$ have?",
        ans, [f"${n} = {sp.latex(sp.factorint(n, visual=True))}$.", f"The divisor count is ${ans}$."])


def vieta_squares(rng: random.Random, level: int) -> MathItem:
    r1, r2 = rng.randint(-5 - 3 * level, 9 + 3 * level), rng.randint(-5 - 3 * level, 9 + 3 * level)
    s, p = r1 + r2, r1 * r2
    ans = sp.Integer(s * s - 2 * p)
    x = sp.Symbol("x")
    equation = f"{sp.latex(sp.expand((x - r1) * (x - r2)))} = 0"
    return MathItem(
        ["quadratic equations", "Vieta's formulas", "symmetric sums of roots"],
        f"Use the quadratic {equation} with roots {r1} and {r2}: sum {s}, product {p}. Ask for the sum of squares "
        f"of the roots, computed as s^2 - 2p without solving.",
        f"Let $r$ and $s$ be the roots of ${equation}$. Find $r^2+s^2$.",
        ans, [f"By Vieta, $r+s={s}$ and $rs={p}$.", f"$r^2+s^2=(r+s)^2-2rs={ans}$."])


def right_triangle(rng: random.Random, level: int) -> MathItem:
    a0, b0, c0 = rng.choice([(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25)])
    k = rng.randint(1, 3 + 3 * level)
    a, b = a0 * k, b0 * k
    hyp = sp.sqrt(a * a + b * b)
    ask_perimeter = level > 0
    ans = a + b + hyp if ask_perimeter else hyp
    what = "the perimeter of the triangle" if ask_perimeter else "the length of the hypotenuse"
    return MathItem(
        ["Pythagorean theorem", "right triangles", "Pythagorean triples"],
        f"Scale the triple ({a0},{b0},{c0}) by {k} to get legs {a} and {b}. Ask for {what}.",
        f"A right triangle has legs of length ${a}$ and ${b}$. Find {what}.",
        ans, [f"The hypotenuse is $\\sqrt{{{a}^2+{b}^2}}={hyp}$."])


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


def base_digit_sum(rng: random.Random, level: int) -> MathItem:
    base = rng.choice([2, 3, 5, 7][: 2 + level])
    n = rng.randint(20, 200 * (level + 1))
    digits = base_digits(n, base)[1:]
    ans = sp.Integer(sum(digits))
    return MathItem(
        ["number bases", "place value", "repeated division"],
        f"Write {n} in base {base} ({''.join(map(str, digits))}) by repeated division and add the digits.",
        f"What is the sum of the digits of ${n}$ when it is written in base ${base}$?",
        ans, [f"${n} = {''.join(map(str, digits))}_{{{base}}}$.", f"The digit sum is ${ans}$."])


def trailing_zeros(rng: random.Random, level: int) -> MathItem:
    n = rng.randint(10 * (level + 1), 60 * (level + 1) ** 2)
    ans = sp.Integer(sum(n // 5**k for k in range(1, 6)))
    return MathItem(
        ["factorials", "Legendre's formula", "trailing zeros"],
        f"Count the factors of 5 in {n}! with Legendre's formula (floor(n/5) + floor(n/25) + ...).",
        f"How many zeros are at the end of ${n}!$?",
        ans, [f"$\\lfloor {n}/5\\rfloor + \\lfloor {n}/25\\rfloor + \\dots = {ans}$."])


def ratio_share(rng: random.Random, level: int) -> MathItem:
    p, q = rng.sample(range(1, 6 + 3 * level), 2)
    unit = rng.randint(3, 20)
    total = (p + q) * unit
    ans = sp.Integer(max(p, q) * unit)
    return MathItem(
        ["ratios and proportions", "unit rates", "part-to-whole reasoning"],
        f"Split {total} in the ratio {p}:{q}; each part is {unit}. Ask for the larger share.",
        f"${total}$ marbles are shared between two friends in the ratio ${p}:{q}$. How many marbles does the friend "
        f"with the larger share get?",
        ans, [f"One part is ${total}/{p + q} = {unit}$.", f"The larger share is ${ans}$."])


def sum_of_squares(rng: random.Random, level: int) -> MathItem:
    k = sp.Symbol("k")
    n = rng.randint(5, 15 + 25 * level)
    ans = sp.summation(k**2, (k, 1, n))
    return MathItem(
        ["sums of powers", "closed-form formulas", "mathematical induction"],
        f"Sum the squares 1^2 + ... + {n}^2 with the closed form n(n+1)(2n+1)/6 for n = {n}.",
        f"Compute $1^2+2^2+\\dots+{n}^2$.",
        ans, [f"$\\sum_{{k=1}}^{{{n}}} k^2 = {n}\\cdot{n + 1}\\cdot{2 * n + 1}/6 = {ans}$."])
