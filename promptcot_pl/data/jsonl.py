"""JSONL reading and writing of records, with errors that name file:line and field.

Writes are atomic (a temporary file in the same directory, then `os.replace`), so a killed process never
leaves a half-written output where a finished one was expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from promptcot_pl.data.atomic import atomic_write
from promptcot_pl.data.records import Record, RecordError

R = TypeVar("R", bound=Record)


class JsonlError(ValueError):
    """A JSONL file has a malformed line; the message starts with `file:line`."""


def iter_json_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed JSON) for each non-blank line of `path`."""
    path = Path(path)
    if not path.is_file():
        raise JsonlError(f"{path}: no such file")
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                raise JsonlError(f"{path}:{lineno}: malformed JSON: {err.msg} (column {err.colno})") from None


def read_jsonl(path: str | Path, record_type: type[R]) -> list[R]:
    """Read every line of `path` as a `record_type`."""
    return records_of(((f"{path}:{lineno}", row) for lineno, row in iter_json_rows(path)), record_type)


def records_of(rows: Iterable[tuple[str, Any]], record_type: type[R]) -> list[R]:
    """Every (where, row) as a `record_type`; a row that is not one is an error naming its `where`."""
    records = []
    for where, row in rows:
        try:
            records.append(record_type.from_dict(row))
        except RecordError as err:
            raise JsonlError(f"{where}: {err}") from None
    return records


def write_jsonl(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> int:
    """Atomically write `records` (records or plain dicts) to `path`; return how many were written.
    In a multi-process run rank 0 writes (the others return 0) and every rank returns once the file is in place."""
    from promptcot_pl.distributed import on_rank_zero

    return on_rank_zero(_write_jsonl, path, records) or 0


def _write_jsonl(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> int:
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in records:
                row = record.to_dict() if isinstance(record, Record) else record
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1

    atomic_write(path, write)
    return count
