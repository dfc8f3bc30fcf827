"""Geometry: right triangles. (Families of the built-in math domain: see `domains/math/__init__.py`.)"""

from __future__ import annotations

import random

import sympy as sp

from promptcot_pl.domains.math.item import MathItem


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
