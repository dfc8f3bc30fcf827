"""The problems later stages practise on: the synthesized set (stage `synth`) or the seed's training problems
(the baseline the paper compares synthesized prompts with), as `Problem` records."""

from __future__ import annotations

from pathlib import Path

from promptcot_pl.data.jsonl import read_jsonl
from promptcot_pl.data.records import Problem, Triple
from promptcot_pl.recipes.context import StageContext


def load_problems(ctx: StageContext, source: str) -> tuple[Path, list[Problem]]:
    """(the file read, its problems); `source` is "synth" or "seed"."""
    match source:
        case "seed":
            path = ctx.triples_dir() / "train.jsonl"
            return path, [Problem(id=t.id, domain=t.domain, problem=t.problem, concepts=t.concepts, level=t.level,
                                  rationale=t.rationale, answer=t.answer, tests=t.tests, source="seed")
                          for t in read_jsonl(path, Triple)]
        case "synth":
            path = ctx.stage_output("synth") / "problems.jsonl"
            return path, read_jsonl(path, Problem)
    raise ValueError(f"unknown problem source {source!r}; expected 'synth' or 'seed'")
