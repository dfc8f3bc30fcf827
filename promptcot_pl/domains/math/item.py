"""One generated problem of the math domain: what every family returns."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


@dataclass
class MathItem:
    concepts: list[str]
    rationale: str
    problem: str
    answer: sp.Expr
    steps: list[str]
