"""The problems later stages practise on: the synthesized set (stage `synth`) or the seed's training problems
(the baseline the paper compares synthesized prompts with), as `Problem` records."""

from __future__ import annotations

from pathlib import Path

from promptcot_pl.data.jsonl import read_jsonl
from promptcot_pl.data.records import Problem, Triple
from promptcot_pl.data.sources import iter_source_rows
from promptcot_pl.runner.context import StageContext, log


def eval_set_problems(paths: list[str]) -> list[str]:
    """The problem statements of the evaluation sets `synth.eval_sets` (JSONL files or `datasets` datasets of rows
    with a string "problem")."""
    texts = []
    for path in paths:
        for where, row in iter_source_rows(path):
            if not isinstance(row, dict) or not isinstance(row.get("problem"), str):
                raise ValueError(f"{where}: an evaluation row needs a string field 'problem'")
            texts.append(row["problem"])
    return texts


def eval_problems(ctx: StageContext, heldout: bool = True) -> list[str]:
    """Every evaluation problem training data must not copy: the seed's held-out split (when `heldout` and the
    split exists) plus the files of `synth.eval_sets`."""
    own = []
    if heldout:  # not the seed stage's own call: ctx.triples_dir() refuses before the seed has finished
        split = ctx.triples_dir() / "heldout.jsonl"
        own = [t.problem for t in read_jsonl(split, Triple)] if split.is_file() else []
    return own + eval_set_problems(ctx.cfg.synth.eval_sets)


def decontaminated(ctx: StageContext, items: list, where: str, heldout: bool = True) -> tuple[list, int]:
    """`items` (records with a `problem`) without those that overlap an evaluation problem (`eval_problems`: the
    seed's held-out split unless `heldout` is false, and `synth.eval_sets`; word n-grams,
    `synth.decontamination_ngram`; short ones as a whole); (kept, dropped count), logged. Synthesis filters its
    problems with the same index, so the SFT arms (synth, seed) are decontaminated the same way
    (tests/test_sft_stage.py)."""
    evaluation = eval_problems(ctx, heldout)
    if not evaluation:
        return items, 0
    from promptcot_pl.data.filters import NgramIndex

    index = NgramIndex(evaluation, ctx.cfg.synth.decontamination_ngram)
    kept = [item for item in items if not index.contaminated(item.problem)]
    if len(kept) < len(items):
        log.info("%s: %d of %d problems overlap an evaluation problem (the held-out split or synth.eval_sets) and "
                 "are left out", where, len(items) - len(kept), len(items))
    return kept, len(items) - len(kept)


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
