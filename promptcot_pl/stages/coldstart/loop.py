"""Stage `coldstart` (SPEC §3): fit q_φ on (c, x) → z and p_θ on c → (z, x) by maximum likelihood.

Outputs `rationale_model/model` (q_φ) and `prompt_model/model` (p_θ) as HF checkpoints, plus held-out NLL
per target token at initialisation and after the fit for both.
"""

from __future__ import annotations

from typing import Any

from promptcot_pl.data.jsonl import read_jsonl
from promptcot_pl.data.prompts import prompt_pairs, rationale_pairs
from promptcot_pl.data.records import Triple
from promptcot_pl.runner.context import StageContext
from promptcot_pl.runner.fit import fit_pairs
from promptcot_pl.runner.model_paths import base_models


def run(ctx: StageContext) -> dict[str, float]:
    seed_dir = ctx.triples_dir()
    train = read_jsonl(seed_dir / "train.jsonl", Triple)
    heldout = read_jsonl(seed_dir / "heldout.jsonl", Triple)[: ctx.cfg.coldstart.eval_limit]
    p_base, q_base = base_models(ctx, train)
    stage = ctx.cfg.coldstart
    kwargs: dict[str, Any] = dict(epochs=stage.epochs, batch_size=stage.batch_size, optim=stage.optim,
                                  source=seed_dir / "train.jsonl")
    q_fmt, p_fmt = ctx.prompt_format("rationale_model", q_base), ctx.prompt_format("prompt_model", p_base)
    q = fit_pairs(ctx, "rationale_model", q_base, rationale_pairs(q_fmt, train), rationale_pairs(q_fmt, heldout),
                  report_as="coldstart/q_nll_heldout", **kwargs)
    p = fit_pairs(ctx, "prompt_model", p_base, prompt_pairs(p_fmt, train), prompt_pairs(p_fmt, heldout),
                  report_as="coldstart/p_nll_heldout", **kwargs)
    return {
        "coldstart/q_nll_heldout_init": q["nll_init"], "coldstart/q_nll_heldout": q["nll"],
        "coldstart/p_nll_heldout_init": p["nll_init"], "coldstart/p_nll_heldout": p["nll"],
        # examples longer than data.max_length are dropped, never cut (data/collate.py)
        "coldstart/q_dropped_too_long": float(q["dropped"]), "coldstart/p_dropped_too_long": float(p["dropped"]),
    }
