"""Built-in seed domains (`arithmetic`, `math`, `code`) and the train/held-out split of any triple corpus.

A domain's problems are verified as `math` (a boxed answer) or `code` (unit tests): `verified_as(name)`. The
arithmetic world's problems are math problems the tiny models can learn to solve (`domains/arithmetic.py`)."""

from __future__ import annotations

import random

from promptcot_pl.data.records import Triple


def verified_as(name: str) -> str:
    """How a domain's answers are checked: "code" (unit tests) or "math" (a boxed answer)."""
    return "code" if name == "code" else "math"


def build_domain(name: str, n_items: int, seed: int) -> list[Triple]:
    match name:
        case "arithmetic":
            from promptcot_pl.domains.arithmetic import build_arithmetic

            return build_arithmetic(n_items, seed)
        case "math":
            from promptcot_pl.domains.math import build_math

            return build_math(n_items, seed)
        case "code":
            from promptcot_pl.domains.code import build_code

            return build_code(n_items, seed)
    raise ValueError(f"unknown domain {name!r}; built-in domains are 'arithmetic', 'math' and 'code'")


def split_heldout(triples: list[Triple], heldout_fraction: float, seed: int,
                  count: int | None = None) -> tuple[list[Triple], list[Triple]]:
    """Shuffle with `seed` and hold out `count` triples, or `heldout_fraction` of them (at least one on each
    side)."""
    if len(triples) < 2:
        raise ValueError(f"need at least 2 triples to split, got {len(triples)}")
    order = list(range(len(triples)))
    random.Random(seed).shuffle(order)
    wanted = count if count is not None else round(len(triples) * heldout_fraction)
    n_heldout = min(max(1, wanted), len(triples) - 1)
    heldout = [triples[i] for i in sorted(order[:n_heldout])]
    train = [triples[i] for i in sorted(order[n_heldout:])]
    return train, heldout
