"""The built-in code seed domain: seeded, offline stdin/stdout tasks with reference solutions and tests.

Expected outputs come from running the family's reference solution (our own trusted code, run in-process with
redirected stdin/stdout) on random inputs; model-written code is never run this way (see `verify/`).
"""

from __future__ import annotations

import contextlib
import io
import random

from promptcot_pl.data.records import Triple
from promptcot_pl.domains.code_families import FAMILIES
from promptcot_pl.domains.distinct import concept_set, draw_distinct, item_id

LEVELS = ("Codeforces Div2 A", "Codeforces Div2 B", "Codeforces Div2 C")
SETTINGS = (
    "A librarian is auditing records.", "A robot logs its sensor readings.", "A teacher is grading a class.",
    "A shop keeps its daily ledger.", "A game server replays a match.", "A weather station stores measurements.",
    "A courier plans a route.", "A chemist labels samples.", "A museum counts its visitors.",
    "A farmer tracks a harvest.",
)
GENERAL_CONCEPTS = ("input parsing", "edge cases", "time complexity", "careful implementation", "simulation")
TESTS_PER_TASK = 4


def run_reference(solution: str, stdin: str) -> str:
    """Run a trusted reference solution on `stdin` and return what it prints."""
    out = io.StringIO()
    lines = iter(stdin.splitlines())
    with contextlib.redirect_stdout(out):
        exec(solution, {"input": lambda *_: next(lines), "__name__": "__main__"})  # noqa: S102 - our own code
    return out.getvalue()


def build_code(n_items: int, seed: int) -> list[Triple]:
    """`n_items` distinct code triples (story setting × family × parameters), the same for the same seed."""
    rng = random.Random(seed)

    def draw():
        level = rng.randrange(len(LEVELS))
        task = FAMILIES[rng.randrange(len(FAMILIES))](rng, level)
        setting = rng.choice(SETTINGS)
        problem = f"{setting} {task.statement}"

        def build() -> Triple:
            tests = []
            for _ in range(TESTS_PER_TASK):
                stdin = task.make_input(rng)
                tests.append({"input": stdin, "output": run_reference(task.solution, stdin)})
            return Triple(id=item_id("code", problem), domain="code",
                          concepts=concept_set(task.concepts, GENERAL_CONCEPTS, rng), level=LEVELS[level],
                          rationale=f"Story: {setting.lower()[:-1]}. {task.rationale}", problem=problem,
                          solution=f"```python\n{task.solution}```", tests=tests)

        return problem, build

    return draw_distinct(n_items, "code", draw)
