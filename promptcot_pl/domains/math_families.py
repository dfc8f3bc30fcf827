"""Problem families of the built-in math domain (a stand-in for the paper's AoPS seeds).

Each family draws parameters for a difficulty level (0 = easiest), writes the designer's rationale that fixes
every parameter and the question (so knowing z makes x predictable), the problem, a sympy-computed answer and
the solution steps. sympy does the arithmetic so every answer is exact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import sympy as sp


@dataclass
class MathItem:
    concepts: list[str]
    rationale: str
    problem: str
    answer: sp.Expr
    steps: list[str]


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


def linear_equation(rng: random.Random, level: int) -> MathItem:
    x = sp.Symbol("x")
    sol = rng.randint(-9 - 5 * level, 9 + 5 * level)
    a, c = rng.sample(range(2, 10 + 5 * level), 2)
    b = rng.randint(-20, 20)
    d = a * sol + b - c * sol
    (ans,) = sp.solve(sp.Eq(a * x + b, c * x + d), x)
    return MathItem(
        ["linear equations", "algebraic manipulation", "balancing equations"],
        f"Build a linear equation with x on both sides whose solution is {ans}: coefficients {a} and {c}, "
        f"constants {b} and {d}. Ask for x.",
        f"Solve for $x$: ${a}x {b:+d} = {c}x {d:+d}$.",
        ans, [f"Move terms: $({a}-{c})x = {d} - ({b})$.", f"So $x = {ans}$."])


def linear_system(rng: random.Random, level: int) -> MathItem:
    x, y = sp.symbols("x y")
    xs, ys = rng.randint(1, 6 + 4 * level), rng.randint(1, 6 + 4 * level)
    a, b, c, d = (rng.randint(1, 5 + 2 * level) for _ in range(4))
    if a * d == b * c:
        d += 1
    e1, e2 = f"{a}x+{b}y={a * xs + b * ys}", f"{c}x+{d}y={c * xs + d * ys}"
    sol = sp.solve([sp.Eq(a * x + b * y, a * xs + b * ys), sp.Eq(c * x + d * y, c * xs + d * ys)], [x, y])
    ans = sol[x] + sol[y]
    return MathItem(
        ["systems of linear equations", "elimination method", "linear combinations"],
        f"Pick the solution x={xs}, y={ys} and two independent equations {e1} and {e2}. Ask for x+y.",
        f"If ${e1}$ and ${e2}$, what is $x+y$?",
        ans, [f"Elimination gives $x={sol[x]}$, $y={sol[y]}$.", f"Hence $x+y={ans}$."])


def percentage_change(rng: random.Random, level: int) -> MathItem:
    price = rng.choice([40, 50, 80, 120, 200, 250, 400])
    up, down = rng.choice([10, 20, 25, 40, 50]), rng.choice([10, 20, 25, 30, 50])
    ans = sp.Rational(price) * (100 + up) / 100 * (100 - down) / 100
    return MathItem(
        ["percentages", "successive percentage changes", "multiplicative reasoning"],
        f"A price of {price} dollars rises by {up}% and then falls by {down}%. The trap is adding percentages; "
        f"the factors multiply. Ask for the final price.",
        f"An item costs ${price}$ dollars. Its price is increased by ${up}\\%$ and then decreased by ${down}\\%$. "
        f"What is the final price in dollars?",
        ans, [f"Final price $= {price}\\cdot {sp.Rational(100 + up, 100)} \\cdot {sp.Rational(100 - down, 100)}$."])


def arithmetic_series(rng: random.Random, level: int) -> MathItem:
    a, d, n = rng.randint(1, 20), rng.randint(2, 7 + 3 * level), rng.randint(10, 20 + 30 * level)
    ans = sp.summation(a + (sp.Symbol("k") - 1) * d, (sp.Symbol("k"), 1, n))
    return MathItem(
        ["arithmetic sequences", "series summation", "pairing terms"],
        f"An arithmetic sequence with first term {a} and common difference {d}; sum its first {n} terms "
        f"using the pairing trick.",
        f"An arithmetic sequence starts at ${a}$ and has common difference ${d}$. Find the sum of its first ${n}$ terms.",
        ans, [f"The last term is ${a + (n - 1) * d}$.", f"Sum $= {n}({a}+{a + (n - 1) * d})/2 = {ans}$."])


def geometric_term(rng: random.Random, level: int) -> MathItem:
    a, r, n = rng.randint(1, 5), rng.randint(2, 3 + level), rng.randint(4, 6 + 2 * level)
    ask_sum = level == 2
    ans = sp.Integer(a) * (r**n - 1) / (r - 1) if ask_sum else sp.Integer(a) * r ** (n - 1)
    what = f"the sum of its first {n} terms" if ask_sum else f"its term number {n}"
    return MathItem(
        ["geometric sequences", "exponents", "growth by a constant ratio"],
        f"A geometric sequence with first term {a} and ratio {r}. Ask for {what}.",
        f"A geometric sequence has first term ${a}$ and common ratio ${r}$. Find {what}.",
        ans, [f"Term $k$ is ${a}\\cdot {r}^{{k-1}}$.", f"This gives ${ans}$."])


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


def count_primes(rng: random.Random, level: int) -> MathItem:
    lo = rng.randint(1, 30 * (level + 1))
    hi = lo + rng.randint(20, 40 + 60 * level)
    ans = sp.primepi(hi) - sp.primepi(lo - 1)
    return MathItem(
        ["prime numbers", "sieve of Eratosthenes", "divisibility tests"],
        f"Count the primes between {lo} and {hi} inclusive by sieving the interval.",
        f"How many prime numbers are there between ${lo}$ and ${hi}$, inclusive?",
        ans, [f"Sieving $[{lo},{hi}]$ leaves ${ans}$ primes."])
