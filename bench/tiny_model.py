"""The model every benchmark uses: the offline tiny model (hidden 128, 2 layers) built on the math seed corpus."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from promptcot_pl.config import TinyModelConfig
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import prompt_model_example
from promptcot_pl.data.records import Triple
from promptcot_pl.domains import build_domain
from promptcot_pl.models import tiny_model_dir

DEFAULT_CACHE = os.path.join(tempfile.gettempdir(), "promptcot-bench-cache")


def bench_model(cache: str = DEFAULT_CACHE) -> tuple[Path, list[Triple]]:
    """(model directory, the 400 math triples it was built on)."""
    triples = build_domain("math", 400, seed=0)
    texts = [s for t in triples for s in prompt_model_example(default_format("prompt_model"), t.concepts, t.level, t.rationale, t.problem)]
    return tiny_model_dir(TinyModelConfig(), texts, cache, seed=0), triples


def race(contenders: dict, tokens: int, detail: str) -> dict[str, float]:
    """Run each contender (a function returning seconds, or (seconds, padding waste)) once, in order; print its
    tokens/s and then every ratio of the first contender to the others. Returns tokens/s by name."""
    rates = {}
    width = max(map(len, contenders))
    for name, fit in contenders.items():
        result = fit()
        seconds, waste = result if isinstance(result, tuple) else (result, None)
        rates[name] = tokens / seconds
        extra = f"; padding waste {waste:.3f}" if waste is not None else ""
        print(f"{name:{width}s}: {rates[name]:9.0f} tokens/s ({seconds:6.1f} s{extra}; {detail})", flush=True)
    base = next(iter(rates))
    for name in list(rates)[1:]:
        print(f"ratio {base} / {name}: {rates[base] / rates[name]:.2f}")
    return rates
