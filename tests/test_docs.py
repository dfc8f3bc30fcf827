"""Docs that cannot rot: every experiment or sweep file the README and docs/ name passes `promptcot check`, every
relative link (and its #anchor) and every repository path they mention exists, every `promptcot` command they
show parses with its verb's flags, and every config key they name is a key of the experiment schema."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shlex
import typing
from pathlib import Path

import pytest

from promptcot_pl.cli import EPILOG, _parser, main
from promptcot_pl.config import STAGE_NAMES
from promptcot_pl.config.loading import RENAMED
from promptcot_pl.experiment import ExperimentConfig
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), REPO / "sweeps/README.md",
        REPO / "bench/README.md", REPO / "mlflow/README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TICKED = re.compile(r"`([^`\n]+)`")
# MLflow run names of fits (`<stage>.<fit>`) that the docs name; they look like keys and are not
RUN_NAMES = {"coldstart.rationale_model", "coldstart.prompt_model", "solver.fit", "selfplay.round_1"}
REPO_FILE = re.compile(r"^[\w.\-/]+\.(?:py|yaml|md|sh|toml)$")
CONFIG_FILE = re.compile(r"(?<![\w/.])((?:experiments|sweeps)/[\w.\-/]+\.yaml)\b")


def _text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", _text(doc), re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_exists(doc):
    broken = []
    for target in LINK.findall(_text(doc)):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        where = (doc.parent / path).resolve() if path else doc
        if not where.exists():
            broken.append(target)
        elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{doc.relative_to(REPO)}: broken links {broken}"


def _mentioned_paths(doc: Path) -> list[str]:
    out = []
    for token in TICKED.findall(_text(doc)):
        token = token.strip().rstrip(".,:;")
        if "/" not in token or not REPO_FILE.match(token) or token.startswith("runs/") or "NNN" in token:
            continue
        if token.split("/")[0] in STAGE_NAMES:  # a stage's output in the run directory (`analyze/table.md`)
            continue
        out.append(token)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_repository_path_mentioned_exists(doc):
    # a path is the repository's, the package's (`stages/em/loop.py`) or relative to the page
    roots = (REPO, REPO / "promptcot_pl", doc.parent)
    missing = [p for p in _mentioned_paths(doc) if not any((root / p).exists() for root in roots)]
    assert not missing, f"{doc.relative_to(REPO)}: no such files {missing}"


def test_every_experiment_and_sweep_file_named_passes_promptcot_check(capsys):
    named = sorted({m for doc in DOCS for m in CONFIG_FILE.findall(_text(doc))} | set(CONFIG_FILE.findall(EPILOG)))
    assert "experiments/quickstart.yaml" in named and any(n.startswith("sweeps/") for n in named)
    missing = [n for n in named if not (REPO / n).is_file()]
    assert not missing, f"named but missing: {missing}"
    assert main(["check", *(str(REPO / n) for n in named)]) == 0, capsys.readouterr()


def _commands(text: str) -> list[str]:
    """`promptcot …` invocations in code blocks and inline code (a shell line may hold several)."""
    text = text.replace("\\\n", " ")
    found = []
    for line in [*re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S), *TICKED.findall(text)]:
        for part in re.split(r"[;\n]|&&|\|\||\bdo\b|\bthen\b", line):
            part = part.split(" # ")[0].strip()
            if part.startswith("promptcot "):
                found.append(part)
            elif part.startswith(("torchrun ", "python -m torch.distributed.run")) and "-m promptcot_pl " in part:
                found.append("promptcot " + part.split("-m promptcot_pl ", 1)[1])
    # placeholders (`EXPERIMENT.yaml [key=value …]`) are syntax, not a command to run
    return [c for c in found if not re.search(r"[\[…]|\.\.\.|\b[A-Z_]{3,}\b(?!\.yaml)|\bNAME\b|\bFILE\b", c)]


def test_every_promptcot_command_shown_parses():
    commands = {c for doc in DOCS for c in _commands(_text(doc))} | set(_commands(f"```\n{EPILOG}\n```"))
    assert len(commands) > 15
    parser, failed = _parser(), []
    for command in sorted(commands):
        args = shlex.split(command)[1:]
        if len(args) <= 1 and not any(a.startswith("-") for a in args):
            continue  # a verb named in prose (`promptcot run`), not a command line
        try:
            parser.parse_args(args)
        except SystemExit as exit_:
            if exit_.code != 0:  # --help exits 0
                failed.append(command)
    assert not failed, f"commands that do not parse: {failed}"


def _is_key(cls: type, parts: list[str]) -> bool:
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return False
        hint = typing.get_type_hints(cls)[part]
        inner = next((a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)), None)
        if inner is None:
            return i == len(parts) - 1
        cls = inner
    return True


def _is_module_path(token: str) -> bool:
    try:
        return importlib.util.find_spec(f"promptcot_pl.{token.rsplit('.', 1)[0]}") is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_key_named_exists(doc):
    areas = {f.name for f in dataclasses.fields(ExperimentConfig) if dataclasses.is_dataclass(f.type) or
             f.name not in ("name", "seed", "stages", "run_name", "output_dir", "threads")}
    unknown = []
    for token in TICKED.findall(_text(doc)):
        key = token.split("=")[0].strip()
        if not re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", key) or key.split(".")[0] not in areas:
            continue
        if key in RENAMED or key in RUN_NAMES or re.search(r"\.(ya?ml|py|md|json|jsonl|png|npz)$", key):
            continue
        if not _is_key(ExperimentConfig, key.split(".")) and not _is_module_path(key):
            unknown.append(key)
    assert not unknown, f"{doc.relative_to(REPO)}: not config keys {sorted(set(unknown))}"


def _stage_configs():
    import ast
    import importlib

    for stage in STAGE_NAMES:
        if not (REPO / f"promptcot_pl/stages/{stage}/config.py").is_file():
            continue
        module = importlib.import_module(f"promptcot_pl.stages.{stage}.config")
        tree = ast.parse((REPO / f"promptcot_pl/stages/{stage}/config.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                prefix = {"DPOConfig": "selfplay.dpo", "GRPOConfig": "selfplay.grpo"}.get(node.name, stage)
                yield stage, prefix, getattr(module, node.name)


@pytest.mark.parametrize("stage,prefix,cls", list(_stage_configs()), ids=lambda x: getattr(x, "__name__", x))
def test_every_stage_key_is_tabled_on_its_method_page_with_its_default(stage, prefix, cls):
    import ast

    page = _text(REPO / "docs/method" / f"{stage}.md")
    rows = dict(re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", page, re.M))
    wrong = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        if key not in rows:
            wrong.append(f"{key}: not on docs/method/{stage}.md")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        try:
            tabled = ast.literal_eval(rows[key])
        except (ValueError, SyntaxError):
            continue  # a constructor call (`OptimConfig(lr=2e-5)`): checked by its own keys
        if tabled != default:
            wrong.append(f"{key}: tabled default {rows[key]}, the code's {default!r}")
    assert not wrong, wrong
