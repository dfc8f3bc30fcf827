"""Parsing annotator answers (the release's two answer formats) without ever evaluating model text.

- concepts: a Python list of strings (`ast.literal_eval` of the first `[...]` span: literals only, no code runs),
  then a line `Difficulty Level: <level>` naming one of the configured levels;
- rationale: the text after `Thinking Process:` (the whole answer when the marker is missing).
Each parser returns the value or the reason it failed, which the stage counts per annotator:
"truncated", "no_list", "bad_list", "too_few_concepts", "no_level", "unknown_level", "empty_rationale",
"contains_markers" (a rationale holding the prompt model's markers would nest them in its target).
"""

from __future__ import annotations

import ast
import re

from promptcot_pl.data.prompts import MARKERS

_LIST = re.compile(r"\[.*?\]", re.S)
_LEVEL = re.compile(r"(?im)^\W*difficulty\s+level\s*:\s*(.+?)\s*$")
MAX_CHARS = 20_000  # longer answers are not parsed at all (literal_eval on huge input is slow)


def parse_concepts(text: str, k: int, truncated: bool = False) -> tuple[list[str] | None, str | None]:
    """(the first k concepts, None) or (None, reason)."""
    if truncated:
        return None, "truncated"
    for match in _LIST.finditer(text[:MAX_CHARS]):
        try:
            value = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, "bad_list"
        concepts = list(dict.fromkeys(" ".join(v.split()) for v in value if v.strip()))
        if len(concepts) < k:
            return None, "too_few_concepts"
        return concepts[:k], None
    return None, "no_list" if "[" not in text else "bad_list"


def parse_level(text: str, levels: list[str]) -> tuple[str | None, str | None]:
    """(level, None) when the answer names one of `levels` (case and spacing ignored), else (None, reason)."""
    match = _LEVEL.search(text[:MAX_CHARS])
    if match is None:
        return None, "no_level"
    said = " ".join(match.group(1).strip(" .*`\"'").lower().split())
    for level in levels:
        if " ".join(level.lower().split()) == said:
            return level, None
    return None, "unknown_level"


def parse_rationale(text: str, truncated: bool = False) -> tuple[str | None, str | None]:
    if truncated:
        return None, "truncated"
    _, sep, after = text.partition("Thinking Process:")
    rationale = (after if sep else text).strip()
    if not rationale:
        return None, "empty_rationale"
    if any(marker in rationale for marker in MARKERS):
        return None, "contains_markers"
    return rationale, None
