"""Number theory: modular powers, gcd/lcm, primes, divisors, digits and bases, trailing zeros. (Families of the built-in math domain: see `domains/math/__init__.py`.)"""

from __future__ import annotations

import random

import sympy as sp
from sympy.ntheory.digits import digits as base_digits

from promptcot_pl.domains.math.item import MathItem


def mod_power(rng: random.Random, level: int) -> MathItem:
    a, m = rng.randint(2, 9 + 4 * level), rng.choice([5, 7, 9, 11, 13][: 2 + level])
    n = rng.randint(10 ** (level + 1), 3 * 10 ** (level + 1))
    ans = sp.Integer(a) ** n % m
    period = sp.n_order(a, m) if sp.gcd(a, m) == 1 else None
    tip = f"powers of {a} repeat mod {m} with period {period}" if period else f"{a} and {m} share a factor"
    return MathItem(
        ["modular arithmetic", "exponentiation", "cyclic patterns"],
        f"Combine modular arithmetic with a large power. Take base {a}, exponent {n} and modulus {m}. "
        f"Key insight: {tip}, so the exponent can be reduced. Ask for the remainder of {a}^{n} divided by {m}.",
        f"Find the remainder when ${a}^{{{n}}}$ is divided by ${m}$.",
        ans, [f"We need ${a}^{{{n}}} \\bmod {m}$; {tip}.", f"Reducing gives the remainder ${ans}$."])


def gcd_lcm(rng: random.Random, level: int) -> MathItem:
    g = rng.randint(2, 6 + 6 * level)
    a, b = g * rng.randint(2, 9 + 5 * level), g * rng.randint(2, 9 + 5 * level)
    gcd, lcm = sp.gcd(a, b), sp.ilcm(a, b)
    ask_sum = level > 0
    ans = gcd + lcm if ask_sum else lcm
    what = "the sum of their greatest common divisor and least common multiple" if ask_sum else "their least common multiple"
    return MathItem(
        ["greatest common divisor", "least common multiple", "prime factorization"],
        f"Use the numbers {a} and {b}, which share the factor {g}. Their gcd is {gcd} and lcm is {lcm}. Ask for {what}.",
        f"Let $a={a}$ and $b={b}$. Find {what}.",
        ans, [f"$\\gcd({a},{b})={gcd}$ and $\\operatorname{{lcm}}({a},{b})={lcm}$."])


def count_primes(rng: random.Random, level: int) -> MathItem:
    lo = rng.randint(1, 30 * (level + 1))
    hi = lo + rng.randint(20, 40 + 60 * level)
    ans = sp.primepi(hi) - sp.primepi(lo - 1)
    return MathItem(
        ["prime numbers", "sieve of Eratosthenes", "divisibility tests"],
        f"Count the primes between {lo} and {hi} inclusive by sieving the interval.",
        f"How many prime numbers are there between ${lo}$ and ${hi}$, inclusive?",
        ans, [f"Sieving $[{lo},{hi}]$ leaves ${ans}$ primes."])


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
