"""Rows from wherever users keep data: a JSONL file, a Hugging Face `datasets` dataset on disk (a `save_to_disk`
folder, parquet or arrow files, or a folder of parquet files) or a dataset name on the hub (`name` or
`name:split`; where the hub is reachable). `datasets` does the reading; every reader of outside data
(`data/released.py`, the seed corpus, evaluation sets) goes through `iter_source_rows`, so each accepts all of
these. Errors name the file and line (JSONL) or the dataset and row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from promptcot_pl.data.jsonl import JsonlError, iter_json_rows, records_of
from promptcot_pl.data.records import Record

R = TypeVar("R", bound=Record)

DATASET_FILES = (".parquet", ".arrow")
FILE_SUFFIXES = (".jsonl", ".json", *DATASET_FILES)
_HUB_NAME = re.compile(r"^[\w.-]+(/[\w.-]+)?(:[\w.-]+)?$")  # name, org/name, org/name:split (dots allowed)


def source_problem(source: str) -> str | None:
    """Why `source` cannot be read (None: it names a file, a dataset folder or — by its shape — a hub dataset).
    A name whose first part is a local folder, or that ends like a file, must exist here."""
    path = Path(source).expanduser()
    if path.is_file() or (path.is_dir() and _dataset_dir(path) is not None):
        return None
    if path.is_dir():
        return f"{source}: a folder, but neither a saved `datasets` dataset nor one of parquet/arrow files"
    name = source.partition(":")[0]
    local = Path(name.split("/", 1)[0]).expanduser().is_dir() and "/" in name
    if _HUB_NAME.match(source) and not local and not name.endswith(FILE_SUFFIXES):
        return None  # a hub name: read when its stage runs
    return f"{source}: no such file or dataset folder" + ("" if local or name.endswith(FILE_SUFFIXES)
                                                          else " (nor the shape of a hub name, org/name[:split])")


def _dataset_dir(path: Path) -> str | None:
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        return "saved"
    if any(path.glob("*.parquet")) or any(path.glob("*.arrow")):
        return "files"
    return None


def load_dataset_source(source: str | Path) -> Any:
    """The `datasets.Dataset` that `source` names (a dataset dictionary gives its "train" split, or its only
    one); `source` must not be a JSONL file."""
    import datasets

    path = Path(source).expanduser()
    kind = _dataset_dir(path) if path.is_dir() else None
    if kind == "saved":
        loaded = datasets.load_from_disk(str(path))
    elif path.is_file() or kind == "files":
        files = [str(path)] if path.is_file() else sorted(str(p) for p in path.iterdir() if p.suffix in DATASET_FILES)
        builder = "parquet" if files[0].endswith(".parquet") else "arrow"
        loaded = datasets.load_dataset(builder, data_files=files, split="train")
    else:
        name, _, split = str(source).partition(":")
        try:
            loaded = datasets.load_dataset(name, split=split or None)
        except Exception as err:  # noqa: BLE001 -- a missing file, an unreachable hub, a bad split: name them
            raise JsonlError(f"{source}: cannot load it as a `datasets` dataset ({type(err).__name__}: {err})") \
                from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded and len(loaded) != 1:
            raise JsonlError(f"{source}: a dataset with splits {sorted(loaded)}; name one as {source}:SPLIT")
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    return loaded


def iter_source_rows(source: str | Path) -> Iterator[tuple[str, Any]]:
    """(where, row) for every row of `source`: "file:line" for a JSONL file, "dataset row i" for a dataset."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix not in DATASET_FILES:
        for lineno, row in iter_json_rows(path):
            yield f"{source}:{lineno}", row
        return
    if not path.exists() and (problem := source_problem(str(source))) is not None:
        raise JsonlError(problem)
    for i, row in enumerate(load_dataset_source(source)):
        # a column holds null where a JSONL row would leave the field out: leave it out, so defaults apply
        yield f"{source} row {i}", {k: v for k, v in row.items() if v is not None}


def read_records(source: str | Path, record_type: type[R]) -> list[R]:
    """Every row of `source` as a `record_type`."""
    return records_of(iter_source_rows(source), record_type)


def source_stem(source: str | Path) -> str:
    """A short name for ids and labels: the file's or folder's name without a data suffix, or the hub name's last
    part ("org/Name-1.5:test" → "Name-1.5")."""
    name = str(source).partition(":")[0].rstrip("/").rsplit("/", 1)[-1]
    return Path(name).stem if name.endswith(FILE_SUFFIXES) else name
