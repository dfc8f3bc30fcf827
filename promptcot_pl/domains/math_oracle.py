"""The built-in math domain's reference solver: it recognises a problem of one of the domain's families by the
family's wording (a regular expression over the whole statement), recomputes the answer with sympy and writes a
short worked solution ending in `\\boxed{answer}`.

It is the "domain's reference solver" teacher of the SFT regime and a source of ground-truth answers for
synthesized problems of the built-in domain (a tiny p_θ mostly rewrites seed templates with new numbers). A
statement it does not recognise, or whose numbers are too large to compute quickly (synthesized text is
untrusted: `2^{10^9}` must not hang the caller), gets None; callers count those.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from itertools import product

import sympy as sp

from promptcot_pl.domains.math import answer_text

N = r"(-?\d{1,15})"  # an integer of at most 15 digits
Solved = tuple[sp.Expr, list[str]]  # (answer, solution steps)


class _TooLarge(ValueError):
    pass


def _small(*values: int, limit: int = 10**6) -> None:
    if any(abs(v) > limit for v in values):
        raise _TooLarge


def _mod_power(a, n, m) -> Solved:
    a, n, m = int(a), int(n), int(m)
    _small(m)
    if m <= 0:
        raise _TooLarge
    ans = sp.Integer(pow(a, n, m))
    return ans, [f"Reduce ${a}^{{{n}}}$ modulo ${m}$ by repeated squaring: the remainder is ${ans}$."]


def _gcd_lcm(a, b, ask) -> Solved:
    a, b = int(a), int(b)
    gcd, lcm = sp.gcd(a, b), sp.ilcm(a, b)
    ans = gcd + lcm if ask.startswith("the sum") else lcm
    return ans, [f"$\\gcd({a},{b})={gcd}$ and $\\operatorname{{lcm}}({a},{b})={lcm}$."]


def _linear_equation(a, b, c, d) -> Solved:
    a, b, c, d = map(int, (a, b.replace(" ", ""), c, d.replace(" ", "")))
    if a == c:
        raise _TooLarge  # no unique solution
    ans = sp.Rational(d - b, a - c)
    return ans, [f"Move terms: $({a}-{c})x = {d} - ({b})$.", f"So $x = {sp.latex(ans)}$."]


def _linear_system(a, b, e, c, d, f) -> Solved:
    x, y = sp.symbols("x y")
    sol = sp.solve([int(a) * x + int(b) * y - int(e), int(c) * x + int(d) * y - int(f)], [x, y], dict=True)
    if len(sol) != 1:
        raise _TooLarge
    ans = sol[0][x] + sol[0][y]
    return ans, [f"Elimination gives $x={sp.latex(sol[0][x])}$, $y={sp.latex(sol[0][y])}$.",
                 f"Hence $x+y={sp.latex(ans)}$."]


def _percentage(price, up, down) -> Solved:
    price, up, down = int(price), int(up), int(down)
    ans = sp.Rational(price) * (100 + up) / 100 * (100 - down) / 100
    return ans, [f"Final price $= {price}\\cdot {sp.latex(sp.Rational(100 + up, 100))} \\cdot "
                 f"{sp.latex(sp.Rational(100 - down, 100))}$."]


def _arithmetic(a, d, n) -> Solved:
    a, d, n = int(a), int(d), int(n)
    last = a + (n - 1) * d
    ans = sp.Integer(n * (a + last) // 2) if n * (a + last) % 2 == 0 else sp.Rational(n * (a + last), 2)
    return ans, [f"The last term is ${last}$.", f"Sum $= {n}({a}+{last})/2 = {ans}$."]


def _geometric(a, r, what, n) -> Solved:
    a, r, n = int(a), int(r), int(n)
    _small(n, limit=2000)
    if what.startswith("the sum"):
        ans = sp.Integer(a) * n if r == 1 else sp.Integer(a) * (sp.Integer(r) ** n - 1) / (r - 1)
    else:
        ans = sp.Integer(a) * sp.Integer(r) ** (n - 1)
    return ans, [f"Term $k$ is ${a}\\cdot {r}^{{k-1}}$.", f"This gives ${ans}$."]


def _committees(k, n) -> Solved:
    k, n = int(k), int(n)
    _small(n, limit=10**4)
    ans = sp.binomial(n, k)
    return ans, [f"The count is $\\binom{{{n}}}{{{k}}} = {ans}$."]


def _arrangements(word) -> Solved:
    counts = sorted(Counter(word).values(), reverse=True)
    ans = sp.factorial(len(word)) / sp.prod([sp.factorial(c) for c in counts])
    return ans, [f"${len(word)}!$ divided by the factorials of the repeat counts {counts} gives ${ans}$."]


def _count_primes(lo, hi) -> Solved:
    lo, hi = int(lo), int(hi)
    _small(lo, hi, limit=10**7)
    ans = sp.primepi(hi) - sp.primepi(lo - 1)
    return ans, [f"Sieving $[{lo},{hi}]$ leaves ${ans}$ primes."]


def _digit_sum_power(base, n) -> Solved:
    base, n = int(base), int(n)
    _small(base, limit=1000)
    _small(n, limit=5000)
    value = base**n
    ans = sp.Integer(sum(int(ch) for ch in str(abs(value))))
    return ans, [f"${base}^{{{n}}} = {value}$.", f"Its digits add up to ${ans}$."]


def _divisor_count(n) -> Solved:
    n = int(n)
    _small(n, limit=10**15)
    ans = sp.divisor_count(n)
    return ans, [f"${n} = {sp.latex(sp.factorint(n, visual=True))}$.", f"The divisor count is ${ans}$."]


def _quadratic(side: str) -> tuple[int, int, int]:
    """Coefficients (x², x, 1) of a side such as `x^{2} - 16 x + 63` (the regex allows digits, x, +, - only)."""
    coeffs = [0, 0, 0]
    for term in re.findall(r"[+-]?[^+-]+", side.replace(" ", "")):
        for power, suffix in ((0, "x^{2}"), (1, "x"), (2, "")):
            if term.endswith(suffix):
                number = term[: len(term) - len(suffix)]
                if not re.fullmatch(r"[+-]?\d*", number):
                    raise _TooLarge
                coeffs[power] += int(number + "1") if number in ("", "+", "-") else int(number)
                break
    return coeffs[0], coeffs[1], coeffs[2]


def _vieta(left, right) -> Solved:
    (a2, a1, a0), (b2, b1, b0) = _quadratic(left), _quadratic(right)
    lead, b, c = a2 - b2, a1 - b1, a0 - b0
    if lead != 1:
        raise _TooLarge
    s, p = -b, c
    ans = sp.Integer(s * s - 2 * p)
    return ans, [f"By Vieta, $r+s={s}$ and $rs={p}$.", f"$r^2+s^2=(r+s)^2-2rs={ans}$."]


def _right_triangle(a, b, what) -> Solved:
    a, b = int(a), int(b)
    hyp = sp.sqrt(a * a + b * b)
    ans = a + b + hyp if what.startswith("the perimeter") else hyp
    return ans, [f"The hypotenuse is $\\sqrt{{{a}^2+{b}^2}}={sp.latex(hyp)}$."]


def _dice(dice, target) -> Solved:
    dice, target = int(dice), int(target)
    _small(dice, limit=6)
    hits = sum(1 for roll in product(range(1, 7), repeat=dice) if sum(roll) == target)
    ans = sp.Rational(hits, 6**dice)
    return ans, [f"{hits} of the ${6 ** dice}$ outcomes sum to ${target}$.", f"The probability is ${sp.latex(ans)}$."]


def _missing_value(n, mean, _k, values) -> Solved:
    n, mean = int(n), int(mean)
    known = [int(v) for v in values.split(",")]
    if len(known) != n - 1:
        raise _TooLarge
    ans = sp.Integer(mean * n - sum(known))
    return ans, [f"Total $= {mean}\\cdot {n} = {mean * n}$; known sum $= {sum(known)}$.", f"Missing score $= {ans}$."]


def _base_digit_sum(n, base) -> Solved:
    n, base = int(n), int(base)
    if not 2 <= base <= 36 or n < 0:
        raise _TooLarge
    digits = []
    while n:
        n, digit = divmod(n, base)
        digits.append(digit)
    ans = sp.Integer(sum(digits))
    return ans, [f"In base {base} the digits are {list(reversed(digits)) or [0]}.", f"The digit sum is ${ans}$."]


def _trailing_zeros(n) -> Solved:
    n = int(n)
    ans, power = 0, 5
    while power <= n:
        ans, power = ans + n // power, power * 5
    return sp.Integer(ans), [f"$\\lfloor {n}/5\\rfloor + \\lfloor {n}/25\\rfloor + \\dots = {ans}$."]


def _ratio_share(total, p, q) -> Solved:
    total, p, q = int(total), int(p), int(q)
    if p + q <= 0:
        raise _TooLarge
    ans = sp.Rational(total * max(p, q), p + q)
    return ans, [f"One part is ${total}/{p + q} = {sp.latex(sp.Rational(total, p + q))}$.",
                 f"The larger share is ${sp.latex(ans)}$."]


def _sum_of_squares(n) -> Solved:
    n = int(n)
    ans = sp.Integer(n * (n + 1) * (2 * n + 1) // 6)
    return ans, [f"$\\sum_{{k=1}}^{{{n}}} k^2 = {n}\\cdot{n + 1}\\cdot{2 * n + 1}/6 = {ans}$."]


_PATTERNS: list[tuple[str, Callable[..., Solved]]] = [
    (rf"Find the remainder when \${N}\^\{{{N}\}}\$ is divided by \${N}\$\.", _mod_power),
    (rf"Let \$a={N}\$ and \$b={N}\$\. Find (the sum of their greatest common divisor and least common multiple|"
     rf"their least common multiple)\.", _gcd_lcm),
    (rf"Solve for \$x\$: \${N}x ([+-] ?\d{{1,12}}) = {N}x ([+-] ?\d{{1,12}})\$\.", _linear_equation),
    (rf"If \${N}x\+{N}y={N}\$ and \${N}x\+{N}y={N}\$, what is \$x\+y\$\?", _linear_system),
    (rf"An item costs \${N}\$ dollars\. Its price is increased by \${N}\\%\$ and then decreased by \${N}\\%\$\. "
     rf"What is the final price in dollars\?", _percentage),
    (rf"An arithmetic sequence starts at \${N}\$ and has common difference \${N}\$\. Find the sum of its first "
     rf"\${N}\$ terms\.", _arithmetic),
    (rf"A geometric sequence has first term \${N}\$ and common ratio \${N}\$\. Find (its term number|the sum of its "
     rf"first) {N}(?: terms)?\.", _geometric),
    (rf"In how many ways can a committee of \${N}\$ be chosen from \${N}\$ people\?", _committees),
    (r"How many distinct arrangements of the letters of the word ([A-Z]{1,12}) are there\?", _arrangements),
    (rf"How many prime numbers are there between \${N}\$ and \${N}\$, inclusive\?", _count_primes),
    (rf"What is the sum of the digits of \${N}\^\{{{N}\}}\$\?", _digit_sum_power),
    (rf"How many positive divisors does \${N}\$ have\?", _divisor_count),
    (r"Let \$r\$ and \$s\$ be the roots of \$([ x\d+\-^{}]*) = ([ x\d+\-^{}]*)\$\. Find \$r\^2\+s\^2\$\.", _vieta),
    (rf"A right triangle has legs of length \${N}\$ and \${N}\$\. Find (the length of the hypotenuse|the perimeter "
     r"of the triangle)\.", _right_triangle),
    (rf"{N} fair six-sided dice are rolled\. What is the probability that the sum is \${N}\$\?", _dice),
    (rf"The mean of {N} test scores is \${N}\$\. Of them, {N} are ((?:-?\d{{1,12}}, )*-?\d{{1,12}})\. What is the "
     r"remaining score\?", _missing_value),
    (rf"What is the sum of the digits of \${N}\$ when it is written in base \${N}\$\?", _base_digit_sum),
    (rf"How many zeros are at the end of \${N}!\$\?", _trailing_zeros),
    (rf"\${N}\$ marbles are shared between two friends in the ratio \${N}:{N}\$\. How many marbles does the friend "
     r"with the larger share get\?", _ratio_share),
    (rf"Compute \$1\^2\+2\^2\+\\dots\+{N}\^2\$\.", _sum_of_squares),
]
SOLVERS = [(re.compile(pattern, re.S), solver) for pattern, solver in _PATTERNS]


def solve(problem: str) -> tuple[str, str] | None:
    """(worked solution ending in `\\boxed{answer}`, answer) for a recognised problem — of a math family or of the
    arithmetic world (`domains/arithmetic.py`) — else None."""
    from promptcot_pl.domains import arithmetic

    solved = arithmetic.solve(problem)
    if solved is not None:
        return solved
    text = " ".join(problem.split())
    for pattern, solver in SOLVERS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        try:
            answer, steps = solver(*match.groups())
        except (_TooLarge, ValueError, ZeroDivisionError, sp.SympifyError, TypeError):
            return None
        answer = sp.sympify(answer)
        if not answer.is_finite:
            return None
        text_answer = answer_text(answer)
        return "\n".join(steps + [f"The answer is $\\boxed{{{text_answer}}}$."]), text_answer
    return None
