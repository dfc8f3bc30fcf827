"""Typed records that stages exchange through JSONL files.

Every record is a dataclass; `from_dict` checks each field against the annotations and raises
`RecordError` naming the field, so a JSONL reader can prefix the file and line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """A mapping does not fit a record type; the message names the field."""


@dataclass
class Record:
    """Base of all records: strict (unknown or missing fields are errors) dict conversion."""

    kind: ClassVar[str] = "record"

    @classmethod
    def from_dict(cls: type[R], row: Any) -> R:
        if not isinstance(row, dict):
            raise RecordError(f"expected a JSON object for a {cls.kind}, got {type(row).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(row) - names)
        if extra:
            raise RecordError(f"field '{extra[0]}': not a field of {cls.kind} (fields: {', '.join(sorted(names))})")
        for f in dataclasses.fields(cls):
            if f.name not in row:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise RecordError(f"field '{f.name}': missing (required for {cls.kind})")
                continue
            problem = _type_problem(row[f.name], hints[f.name])
            if problem:
                raise RecordError(f"field '{f.name}': {problem}")
        return cls(**row)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why `value` does not match `hint` (None when it does). Covers the types records use."""
    if hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        problems = [_type_problem(value, opt) for opt in options if opt is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if origin is list:
        if not isinstance(value, list):
            return f"expected a list, got {type(value).__name__}"
        (item,) = typing.get_args(hint) or (Any,)
        for i, element in enumerate(value):
            problem = _type_problem(element, item)
            if problem:
                return f"item {i}: {problem}"
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"expected an object, got {type(value).__name__}"
        _, item = typing.get_args(hint) or (str, Any)
        for key, element in value.items():
            problem = _type_problem(element, item)
            if problem:
                return f"key {key!r}: {problem}"
        return None
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    return None if ok else f"expected {hint.__name__}, got {type(value).__name__} {value!r:.40}"


UnitTest = dict[str, str]
"""One stdin/stdout test in the released PromptCoT format: {"input": ..., "output": ...}."""


@dataclass
class Triple(Record):
    """A seed item (c, z, x): concepts + level, the designer's rationale, the problem, and its check."""

    kind: ClassVar[str] = "triple"
    id: str
    domain: str
    concepts: list[str]
    level: str
    rationale: str
    problem: str
    answer: str | None = None
    solution: str | None = None
    tests: list[UnitTest] | None = None
    source: str = "builtin"


@dataclass
class ConceptSet(Record):
    """A concept set c, as in the released concept files ({"concepts": [...]})."""

    kind: ClassVar[str] = "concept set"
    concepts: list[str]
    level: str | None = None


@dataclass
class Problem(Record):
    """A problem to train on (synthesized or seed) with its verifiable target and provenance."""

    kind: ClassVar[str] = "problem"
    id: str
    domain: str
    problem: str
    concepts: list[str] = field(default_factory=list)
    level: str | None = None
    rationale: str | None = None
    answer: str | None = None
    tests: list[UnitTest] | None = None
    source: str = "synth"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rollout(Record):
    """One policy answer to a problem, its format validity and reward (None: could not be scored)."""

    kind: ClassVar[str] = "rollout"
    problem_id: str
    index: int
    text: str
    valid: bool
    reward: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pair(Record):
    """A preference pair for DPO: chosen passes the check, rejected fails it."""

    kind: ClassVar[str] = "pair"
    problem_id: str
    prompt: str
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trace(Record):
    """A teacher's solution trace for a prompt (SFT data)."""

    kind: ClassVar[str] = "trace"
    problem_id: str
    prompt: str
    completion: str
    meta: dict[str, Any] = field(default_factory=dict)
