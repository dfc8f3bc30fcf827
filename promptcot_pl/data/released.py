"""Readers and writers for the released PromptCoT file formats, so users can bring real data.

- concept rows:            {"concepts": [...], "level"?: ...}                      → ConceptSet
- problem-generation rows: {"prompt": <rendered concepts>, "completion": <marked z and x>} → Triple
- self-play pairs:         {"prompt", "chosen", "rejected"}                          → Pair
- SFT rows:                {"prompt", "completion"}                                 → Trace
Extra fields in released rows are ignored (the releases carry their own metadata); missing or mistyped
required fields are errors naming file:line and field.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from promptcot_pl.data.jsonl import JsonlError, iter_json_rows
from promptcot_pl.data.prompts import parse_concepts, parse_marked, prompt_model_example
from promptcot_pl.data.records import ConceptSet, Pair, Trace, Triple


def _fields(path: str | Path, lineno: int, row: Any, names: tuple[str, ...]) -> list[str]:
    where = f"{path}:{lineno}"
    if not isinstance(row, dict):
        raise JsonlError(f"{where}: expected a JSON object, got {type(row).__name__}")
    values = []
    for name in names:
        if name not in row:
            raise JsonlError(f"{where}: field '{name}': missing")
        if not isinstance(row[name], str):
            raise JsonlError(f"{where}: field '{name}': expected a string, got {type(row[name]).__name__}")
        values.append(row[name])
    return values


def read_concept_rows(path: str | Path) -> list[ConceptSet]:
    out = []
    for lineno, row in iter_json_rows(path):
        concepts = row.get("concepts") if isinstance(row, dict) else None
        if not isinstance(concepts, list) or not all(isinstance(c, str) for c in concepts) or not concepts:
            raise JsonlError(f"{path}:{lineno}: field 'concepts': expected a non-empty list of strings")
        level = row.get("level")
        out.append(ConceptSet(concepts=concepts, level=level if isinstance(level, str) else None))
    return out


def read_problem_generation_rows(path: str | Path, domain: str) -> list[Triple]:
    """Triples from prompt/completion rows; concepts and level are parsed from the prompt."""
    out = []
    for lineno, row in iter_json_rows(path):
        prompt, completion = _fields(path, lineno, row, ("prompt", "completion"))
        parsed = parse_marked(completion)
        if parsed is None:
            raise JsonlError(f"{path}:{lineno}: field 'completion': missing the rationale or problem markers")
        concepts, level = parse_concepts(prompt)
        if not concepts:
            raise JsonlError(f"{path}:{lineno}: field 'prompt': no concept list found ('Foundational Concepts:' + items)")
        rationale, problem = parsed
        digest = hashlib.sha1(f"{prompt}\n{completion}".encode()).hexdigest()[:12]
        out.append(Triple(id=f"{domain}-{digest}", domain=domain, concepts=concepts, level=level or "unknown",
                          rationale=rationale, problem=problem, source=str(path)))
    return out


def to_problem_generation_row(triple: Triple) -> dict[str, str]:
    prompt, completion = prompt_model_example(triple.concepts, triple.level, triple.rationale, triple.problem)
    return {"prompt": prompt, "completion": completion}


def read_pair_rows(path: str | Path) -> list[Pair]:
    out = []
    for lineno, row in iter_json_rows(path):
        prompt, chosen, rejected = _fields(path, lineno, row, ("prompt", "chosen", "rejected"))
        out.append(Pair(problem_id=f"{Path(path).name}:{lineno}", prompt=prompt, chosen=chosen, rejected=rejected))
    return out


def to_pair_row(pair: Pair) -> dict[str, str]:
    return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}


def read_sft_rows(path: str | Path) -> list[Trace]:
    out = []
    for lineno, row in iter_json_rows(path):
        prompt, completion = _fields(path, lineno, row, ("prompt", "completion"))
        out.append(Trace(problem_id=f"{Path(path).name}:{lineno}", prompt=prompt, completion=completion))
    return out


def to_sft_row(trace: Trace) -> dict[str, str]:
    return {"prompt": trace.prompt, "completion": trace.completion}
