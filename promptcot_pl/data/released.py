"""Readers and writers for the released PromptCoT file formats, so users can bring real data.

- concept rows:            {"foundational_concepts" | "concepts": [...], "level"?, "prompt"?} → ConceptSet
- problem-generation rows: {"prompt": <rendered concepts>, "completion": <marked z and x>} → Triple
- evaluation sets:         math {"prompt" (chat-rendered), "reference_solution" ("… #### answer")}, code
                           {"prompt", "input_output": '{"inputs": [...], "outputs": [...]}'}, or ours
                           {"problem", "answer" | "solution" | "tests", "level"?}    → Problem (bare statement)
                           (a TRL conversational "prompt", a list of turns, is read as its last user turn)
Every reader takes a JSONL file or a `datasets` dataset (on disk or a hub name: `data/sources.py`).
Extra fields in released rows are ignored (the releases carry their own metadata); missing or mistyped
required fields are errors naming file:line and field. The release's self-play pairs and SFT rows are written by
their stages (`stages/selfplay/pairs.py`, `stages/sft/traces.py`), which know the policy's prompt format.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from promptcot_pl.data.formats import PromptFormat, unwrap_problem, user_message
from promptcot_pl.data.jsonl import JsonlError
from promptcot_pl.data.prompts import parse_concepts, parse_marked, prompt_model_example
from promptcot_pl.data.records import ConceptSet, Problem, Triple
from promptcot_pl.data.sources import iter_source_rows, source_stem
from promptcot_pl.verify.math import extract_answer


def _fields(where: str, row: Any, names: tuple[str, ...]) -> list[str]:
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
    """Concept sets from the release's "Concepts" rows (`foundational_concepts`, `level`; some dumps carry only
    `concepts`, others only the rendered `prompt`, which is parsed) or from our concept_sets.jsonl."""
    out = []
    for where, row in iter_source_rows(path):
        if not isinstance(row, dict):
            raise JsonlError(f"{where}: expected a JSON object, got {type(row).__name__}")
        name = "foundational_concepts" if "foundational_concepts" in row else "concepts"
        concepts, level = row.get(name), row.get("level")
        if concepts is None and isinstance(row.get("prompt"), str):
            concepts, parsed_level = parse_concepts(row["prompt"])
            level = level or parsed_level
        if not isinstance(concepts, list) or not all(isinstance(c, str) for c in concepts) or not concepts:
            raise JsonlError(f"{where}: field '{name}': expected a non-empty list of strings (or a 'prompt' "
                             "with a 'Foundational Concepts:' list)")
        out.append(ConceptSet(concepts=concepts, level=level if isinstance(level, str) else None))
    return out


def read_problem_generation_rows(path: str | Path, domain: str) -> list[Triple]:
    """Triples from prompt/completion rows; concepts and level are parsed from the prompt."""
    out = []
    for where, row in iter_source_rows(path):
        prompt, completion = _fields(where, row, ("prompt", "completion"))
        parsed = parse_marked(completion)
        if parsed is None:
            raise JsonlError(f"{where}: field 'completion': missing the rationale or problem markers")
        concepts, level = parse_concepts(prompt)
        if not concepts:
            raise JsonlError(f"{where}: field 'prompt': no concept list found ('Foundational Concepts:' + items)")
        rationale, problem = parsed
        digest = hashlib.sha1(f"{prompt}\n{completion}".encode()).hexdigest()[:12]
        out.append(Triple(id=f"{domain}-{digest}", domain=domain, concepts=concepts, level=level or "unknown",
                          rationale=rationale, problem=problem, source=str(path)))
    return out


def to_problem_generation_row(fmt: PromptFormat, triple: Triple) -> dict[str, str]:
    prompt, completion = prompt_model_example(fmt, triple.concepts, triple.level, triple.rationale, triple.problem,
                                              triple.domain)
    return {"prompt": prompt, "completion": completion}


def read_eval_rows(path: str | Path) -> list[Problem]:
    """An evaluation set, its format recognised from each row's fields; the release's chat wrapper and solver
    wording are removed, so the problem can be rendered anew for the evaluated model."""
    out = []
    for lineno, (where, row) in enumerate(iter_source_rows(path), start=1):
        if not isinstance(row, dict):
            raise JsonlError(f"{where}: expected a JSON object, got {type(row).__name__}")
        # a dataset's columns hold nulls where a JSONL row leaves the field out
        domain = "code" if row.get("input_output") is not None or row.get("tests") is not None else "math"
        if isinstance(row.get("problem"), str):
            problem = row["problem"].strip()
        elif isinstance(row.get("prompt"), str):
            problem = unwrap_problem(user_message(row["prompt"]), domain)
        elif (turns := [t["content"] for t in row.get("prompt") or [] if isinstance(t, dict) and t.get("role") == "user"]):
            problem = unwrap_problem(str(turns[-1]), domain)  # TRL's conversational layout: a list of turns
        else:
            raise JsonlError(f"{where}: field 'problem' (or a release 'prompt'): missing")
        answer, tests = None, None
        if domain == "code":
            tests = _tests(row, where)
        elif isinstance(row.get("answer"), str | int | float) and not isinstance(row.get("answer"), bool):
            answer = str(row["answer"])
        elif isinstance(row.get("reference_solution"), str) and "####" in row["reference_solution"]:
            answer = row["reference_solution"].rsplit("####", 1)[1].strip()
        elif isinstance(row.get("solution"), str) and extract_answer(row["solution"]):
            answer = extract_answer(row["solution"])
        else:
            raise JsonlError(f"{where}: field 'answer' (or a 'solution' with a \\boxed{{}} answer, or a release "
                             "'reference_solution' ending '#### <answer>'): missing")
        if not problem or (answer is not None and not answer):
            raise JsonlError(f"{where}: empty problem or answer")
        key = row.get("idx", row.get("id", lineno))
        level = row.get("level") if isinstance(row.get("level"), str) else None
        meta = {"solution": row["solution"]} if isinstance(row.get("solution"), str) else {}
        out.append(Problem(id=f"{source_stem(path)}-{key}", domain=domain, problem=problem, answer=answer, tests=tests,
                           level=level, source=str(row.get("source", source_stem(path))), meta=meta))
    return out


def _tests(row: dict, where: str) -> list[dict[str, str]]:
    if row.get("tests") is not None:
        tests = row["tests"]
        if not isinstance(tests, list) or not all(isinstance(t, dict) and isinstance(t.get("input"), str)
                                                  and isinstance(t.get("output"), str) for t in tests) or not tests:
            raise JsonlError(f"{where}: field 'tests': expected a non-empty list of {{'input', 'output'}} strings")
        return [{"input": t["input"], "output": t["output"]} for t in tests]
    value = row["input_output"]
    try:
        table = json.loads(value) if isinstance(value, str) else value
        inputs, outputs = table["inputs"], table["outputs"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise JsonlError(f"{where}: field 'input_output': expected a JSON string with 'inputs' and 'outputs'") from None
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs) or not inputs:
        raise JsonlError(f"{where}: field 'input_output': 'inputs' and 'outputs' must be non-empty lists of one length")
    return [{"input": str(i), "output": str(o)} for i, o in zip(inputs, outputs)]
