"""Structural difficulty of a problem set from the built-in arithmetic world's oracle (`domains/arithmetic.py`):
what the statements actually realise — operations, column steps of the worked solution, the level by rule — next
to the solver's pass rate, which only says how hard the set is *for that solver*. Also how often a set's reference
answers (majority votes, for synthesized sets) agree with the oracle's.

Statements the oracle cannot read (another wording, another domain) are left out and their share is reported:
for the `math` and `code` domains every column but `oracle_readable` is NaN."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from promptcot_pl.domains.arithmetic import solve, structure


def structural_difficulty(problems: Sequence) -> dict[str, float]:
    """`oracle_readable` (share of statements the oracle reads), mean `oracle_level`, `oracle_operations` and
    `oracle_column_steps` over those, and `reference_agreement` (share whose `answer` equals the oracle's)."""
    read = [(p, structure(p.problem)) for p in problems]
    known = [(p, s) for p, s in read if s is not None]
    out = {"oracle_readable": len(known) / len(problems) if problems else math.nan}
    for key in ("level", "operations", "column_steps"):
        out[f"oracle_{key}"] = statistics.fmean(s[key] for _, s in known) if known else math.nan
    # a statement the oracle reads (`known`) it also solves: both parse it the same way
    answered = [(p, solved[1]) for p, _ in known
                if getattr(p, "answer", None) and (solved := solve(p.problem)) is not None]
    out["reference_agreement"] = (statistics.fmean(float(p.answer.strip() == answer) for p, answer in answered)
                                  if answered else math.nan)
    return out
