"""Loading typed configs: dataclass defaults ⊕ a YAML file ⊕ `a.b=c` overrides, merged by OmegaConf.

OmegaConf does the merging and the type / `Literal` checks; this module adds what users need from the errors:
every problem of a file at once, each naming the file or the override that set the bad key, its full dotted path
and the closest valid key. `promptcot_pl/experiment.py` uses it for experiments, `sweeps/config.py` for sweeps.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

T = TypeVar("T")

# Keys that moved or changed meaning: naming the new key beats "did you mean" on the old one.
RENAMED = {"em.score_batch_size": "trainer.score_tokens (scoring batches are sized by token positions now)"}


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the source and the key (one line per problem)."""


class Problems:
    """The problems found in one config, each blamed on the layer (file or override) that last set its key."""

    def __init__(self, layers: Sequence[tuple[str, dict]], default: str) -> None:
        self.default = default
        self.set_by: dict[str, str] = {}
        for source, node in layers:
            for key in _leaf_keys(node, ""):
                self.set_by[key] = source
        self.lines: list[str] = []

    def source_of(self, key: str) -> str:
        """The layer that set `key` (or a key under or above it) last; the file or "defaults" if none did."""
        hits = [src for k, src in self.set_by.items() if k == key or k.startswith(f"{key}.") or key.startswith(f"{k}.")]
        return hits[-1] if hits else self.default

    def add(self, message: str, key: str | None = None) -> None:
        """Record `message` ("key 'a.b': why"); the key is read from the message when not given."""
        if key is None and message.startswith("key '"):
            key = message[5:message.index("'", 5)]
        self.lines.append(f"{self.source_of(key) if key else self.default}: {message}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(self.lines) if len(self.lines) == 1
                              else f"{len(self.lines)} problems:\n" + "\n".join(f"  {line}" for line in self.lines))


def _leaf_keys(node: Any, prefix: str) -> list[str]:
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _leaf_keys(value, f"{prefix}{key}.")] or [prefix[:-1]]
    return [prefix[:-1]]


def load_structured(schema: type[T], path: str | Path | None, overrides: Sequence[str] = ()) -> tuple[T, Problems]:
    """`schema`'s defaults ⊕ the YAML file at `path` (None: none) ⊕ dotlist `overrides`, and the problems found
    so far: unknown keys and type errors of every layer. Call `problems.raise_if_any()` after checking values."""
    layers: list[tuple[str, DictConfig]] = []
    bad_overrides = []
    if path is not None:
        layers.append((str(path), read_yaml(Path(path))))
    for item in overrides:
        if "=" not in item:
            bad_overrides.append(f"override {item!r}: expected KEY=VALUE, e.g. coldstart.epochs=3")
            continue
        layers.append((f"override {item!r}", OmegaConf.from_dotlist([item])))
    # every layer is a mapping: read_yaml refuses other documents, a dotlist makes one
    containers = [(source, typing.cast(dict, OmegaConf.to_container(layer))) for source, layer in layers]
    problems = Problems(containers, str(path) if path is not None else "defaults")
    problems.lines.extend(bad_overrides)
    merged = OmegaConf.structured(schema)
    for (source, layer), (_, container) in zip(layers, containers):
        unknown = _unknown(container, schema, prefix="", source=source)
        problems.lines.extend(message for _, message in unknown)
        if unknown:  # the layer's other keys are still merged, so their values are checked too
            layer = OmegaConf.create(_without(container, [path for path, _ in unknown]))
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", None) or "?"
            problems.lines.append(f"{source}: key '{key}': {str(err).splitlines()[0]}")
    # not raised yet: the caller checks values too (a key that failed here keeps its default) and raises once
    return OmegaConf.to_object(merged), problems  # type: ignore[return-value]


def read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file")
    try:
        node = OmegaConf.load(path)
    except (YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return node


def check_keys(node: Any, cls: type, prefix: str, source: str) -> None:
    """Raise on the keys of `node` that `cls` (a dataclass) does not have, all of them, each with the closest."""
    problems = [message for _, message in _unknown(node, cls, prefix, source)]
    if problems:
        raise ConfigError("\n".join(problems))


def _unknown(node: Any, cls: type, prefix: str, source: str) -> list[tuple[list, str]]:
    """(path in `node`, message) for each key of `node` that `cls` (a dataclass) does not have, suggesting the
    closest one."""
    if not isinstance(node, dict):
        return []
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out: list[tuple[list, str]] = []

    def nested(path: list, found: list[tuple[list, str]]) -> None:
        out.extend((path + sub, message) for sub, message in found)

    for key, value in node.items():
        full = f"{prefix}{key}"
        if full in RENAMED:
            out.append(([key], f"{source}: key '{full}' was replaced by {RENAMED[full]}"))
            continue
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys here: {', '.join(names)}"
            out.append(([key], f"{source}: unknown key '{full}'{hint}"))
            continue
        origin, args = typing.get_origin(hints[key]), typing.get_args(hints[key])
        if origin is dict and args and _is_dataclass_type(args[-1]) and isinstance(value, dict):
            for name, item in value.items():  # user-named entries, each a dataclass (sweep search spaces)
                nested([key, name], _unknown(item, args[-1], prefix=f"{full}.{name}.", source=source))
        elif origin is list and args and _is_dataclass_type(args[0]) and isinstance(value, list):
            for i, item in enumerate(value):
                nested([key, i], _unknown(item, args[0], prefix=f"{full}[{i}].", source=source))
        elif (sub := _dataclass_in(hints[key])) is not None:
            nested([key], _unknown(value, sub, prefix=f"{full}.", source=source))
    return out


def _without(node: Any, paths: list[list]) -> Any:
    """A copy of the container `node` without the entries at `paths`."""
    import copy

    node = copy.deepcopy(node)
    for path in paths:
        parent = node
        for step in path[:-1]:
            parent = parent[step]
        del parent[path[-1]]
    return node


def _is_dataclass_type(hint: Any) -> typing.TypeGuard[type]:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type inside a hint such as `Foo` or `Foo | None`, else None."""
    return next((arg for arg in (hint, *typing.get_args(hint)) if _is_dataclass_type(arg)), None)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML (what is saved in the run directory)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def flatten(cfg: Any) -> dict[str, str]:
    """Dotted key → string value for every leaf (MLflow params)."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = str(node)

    walk(OmegaConf.to_container(OmegaConf.structured(cfg)), "")
    return out
