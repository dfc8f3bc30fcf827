"""Unit tests for synthesized code problems, written by a model as in the paper: one JSON test
`{"input": ..., "output": ...}` (stdin → expected stdout) per call, several calls per problem.

`parse_test` never raises on model output: it returns the test or the reason it was dropped ("no_json",
"bad_json", "not_an_object", "missing_keys", "bad_values"), which the recipe counts. Beyond the paper, tests are
kept only when the problem's reference solution passes them, when one exists (`verify.code.run_tests`).
"""

from __future__ import annotations

import json
import re

from promptcot_pl.data.formats import PromptFormat

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)

def test_writer_prompt(fmt: PromptFormat, problem: str) -> str:
    """The test writer's prompt (`prompts.test_writer`; words in data/prompt_texts.yaml)."""
    return fmt.prompt("code", problem=problem.strip())


def _candidate(text: str) -> str | None:
    """The JSON text: a fenced block if there is one, else the span from the first '{' to the last '}'."""
    fenced = _FENCE.search(text)
    if fenced:
        return fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    return text[start:end + 1] if 0 <= start < end else None


def parse_test(text: str) -> tuple[dict[str, str] | None, str | None]:
    """(test, None) or (None, reason)."""
    candidate = _candidate(text)
    if candidate is None:
        return None, "no_json"
    try:
        value = json.loads(candidate)
    except (json.JSONDecodeError, RecursionError):
        return None, "bad_json"
    if not isinstance(value, dict):
        return None, "not_an_object"
    if "input" not in value or "output" not in value:
        return None, "missing_keys"
    test = {}
    for key in ("input", "output"):
        item = value[key]
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            return None, "bad_values"
        test[key] = str(item)
    if not test["output"].strip():
        return None, "bad_values"
    return test, None
