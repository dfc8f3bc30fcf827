"""Stage `coldstart` (SPEC §3): fit q_φ on (c, x) → z and p_θ on c → (z, x) by maximum likelihood.

Outputs `rationale_model/model` (q_φ) and `prompt_model/model` (p_θ) as HF checkpoints, plus held-out NLL
per target token at initialisation and after the fit for both.
"""

from __future__ import annotations

from promptcot_pl import distributed
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.jsonl import read_jsonl
from promptcot_pl.data.prompts import prompt_model_example, rationale_model_example, solver_example
from promptcot_pl.data.records import Triple
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.models import tiny_model_dir
from promptcot_pl.recipes.context import StageContext, log
from promptcot_pl.recipes.fit import fit_pairs


def prompt_pairs(fmt: PromptFormat, triples: list[Triple]) -> list[tuple[str, str]]:
    return [prompt_model_example(fmt, t.concepts, t.level, t.rationale, t.problem, t.domain) for t in triples]


def rationale_pairs(fmt: PromptFormat, triples: list[Triple]) -> list[tuple[str, str]]:
    return [rationale_model_example(fmt, t.concepts, t.level, t.problem, t.rationale, t.domain) for t in triples]


def base_models(ctx: StageContext, train: list[Triple]) -> tuple[str, str]:
    """(base of p_θ, base of q_φ). `model.path == "tiny"` builds (or reuses) the offline tiny model, whose
    tokenizer is trained on every conditional's text of the training corpus."""
    model = ctx.cfg.model
    if model.path != "tiny":
        return model.path, model.rationale_path or model.path
    words = {role: ctx.prompt_format(role, None) for role in ("prompt_model", "rationale_model", "solver")}
    texts = [text for pairs in (prompt_pairs(words["prompt_model"], train), rationale_pairs(words["rationale_model"], train))
             for pair in pairs for text in pair]
    texts += [text for t in train if t.solution
              for text in solver_example(words["solver"], t.problem, t.solution, t.domain)]
    # built by rank 0 alone: transformers' save_pretrained writes no weights on other torch.distributed ranks
    path = str(distributed.broadcast(on_rank_zero(tiny_model_dir, model.tiny, texts, model.cache_dir, ctx.cfg.seed)))
    log.info("coldstart: tiny model at %s", path)
    return path, model.rationale_path or path


def run(ctx: StageContext) -> dict[str, float]:
    seed_dir = ctx.triples_dir()
    train = read_jsonl(seed_dir / "train.jsonl", Triple)
    heldout = read_jsonl(seed_dir / "heldout.jsonl", Triple)[: ctx.cfg.coldstart.eval_limit]
    p_base, q_base = base_models(ctx, train)
    stage = ctx.cfg.coldstart
    kwargs = dict(epochs=stage.epochs, batch_size=stage.batch_size, optim=stage.optim)
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
