"""Algebra: linear equations and systems, percentages and ratios, sequences and series, Vieta. (Families of the built-in math domain: see `domains/math/__init__.py`.)"""

from __future__ import annotations

import random

import sympy as sp

from promptcot_pl.domains.math.item import MathItem


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


def sum_of_squares(rng: random.Random, level: int) -> MathItem:
    k = sp.Symbol("k")
    n = rng.randint(5, 15 + 25 * level)
    ans = sp.summation(k**2, (k, 1, n))
    return MathItem(
        ["sums of powers", "closed-form formulas", "mathematical induction"],
        f"Sum the squares 1^2 + ... + {n}^2 with the closed form n(n+1)(2n+1)/6 for n = {n}.",
        f"Compute $1^2+2^2+\\dots+{n}^2$.",
        ans, [f"$\\sum_{{k=1}}^{{{n}}} k^2 = {n}\\cdot{n + 1}\\cdot{2 * n + 1}/6 = {ans}$."])


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
