"""Built-in seed domains (`math`, `code`) and the train/held-out split of any triple corpus."""

from __future__ import annotations

import random

from promptcot_pl.data.records import Triple


def build_domain(name: str, n_items: int, seed: int) -> list[Triple]:
    match name:
        case "math":
            from promptcot_pl.domains.math import build_math

            return build_math(n_items, seed)
        case "code":
            from promptcot_pl.domains.code import build_code

            return build_code(n_items, seed)
    raise ValueError(f"unknown domain {name!r}; built-in domains are 'math' and 'code'")


def split_heldout(triples: list[Triple], heldout_fraction: float, seed: int) -> tuple[list[Triple], list[Triple]]:
    """Shuffle with `seed` and hold out `heldout_fraction` of the triples (at least one on each side)."""
    if len(triples) < 2:
        raise ValueError(f"need at least 2 triples to split, got {len(triples)}")
    order = list(range(len(triples)))
    random.Random(seed).shuffle(order)
    n_heldout = min(max(1, round(len(triples) * heldout_fraction)), len(triples) - 1)
    heldout = [triples[i] for i in sorted(order[:n_heldout])]
    train = [triples[i] for i in sorted(order[n_heldout:])]
    return train, heldout
