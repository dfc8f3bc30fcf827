"""What both built-in domains share: drawing distinct problems, concept sets and stable ids."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

from promptcot_pl.data.records import Triple


def draw_distinct(n_items: int, domain: str, draw: Callable[[], tuple[str, Callable[[], Triple]]]) -> list[Triple]:
    """Call `draw()` → (problem text, builder) until `n_items` distinct problems are built.

    Builders run only for new problems (building a code task runs its reference solution). Gives up with a
    clear error when the domain's parameter space is too small for the request.
    """
    out: list[Triple] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n_items:
        attempts += 1
        if attempts > 50 * n_items + 1000:
            raise ValueError(f"{domain} domain: could only make {len(out)} distinct problems, asked for {n_items}")
        problem, build = draw()
        if problem not in seen:
            seen.add(problem)
            out.append(build())
    return out


def concept_set(core: Sequence[str], general: Sequence[str], rng: random.Random) -> list[str]:
    """The family's core concepts plus two general ones, in random order (concept lists are unordered)."""
    concepts = list(core) + rng.sample(list(general), 2)
    rng.shuffle(concepts)
    return concepts


def item_id(domain: str, problem: str) -> str:
    return f"{domain}-{hashlib.sha1(problem.encode()).hexdigest()[:10]}"
