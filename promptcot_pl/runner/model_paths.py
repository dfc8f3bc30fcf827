"""Where the models a stage starts from come from: the base models of p_θ and q_φ (the user's, or the offline tiny
model built for this corpus) and the solver a finished `solver` stage provides. Several stages read these, so
they live below the stages."""

from __future__ import annotations

import json
import math
from pathlib import Path

from promptcot_pl import distributed
from promptcot_pl.data.prompts import prompt_pairs, rationale_pairs, solver_example
from promptcot_pl.data.records import Triple
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.models import tiny_model_dir
from promptcot_pl.runner.context import StageContext, log


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
    log.info("%s: tiny model at %s", ctx.stage_dir.name, path)
    return path, model.rationale_path or path


def best_sft_student(run_dir: Path, sources: list[str]) -> str:
    """The student of a finished `sft` stage with the highest held-out accuracy after SFT (the first on a tie; a
    NaN accuracy never wins)."""
    done = run_dir / "sft" / "DONE"
    if not done.is_file():
        raise FileNotFoundError(f"{done}: selfplay.policy=sft starts from an SFT student, but stage sft has not "
                                "finished in this run (add sft to stages)")
    metrics = json.loads(done.read_text() or "{}")

    def accuracy(source: str) -> tuple[float, int]:
        value = metrics.get(f"sft/{source}/accuracy_heldout", float("nan"))
        return (float("-inf") if math.isnan(value) else value, -sources.index(source))

    return str(run_dir / "sft" / max(sources, key=accuracy) / "student" / "model")


def solver_model(ctx: StageContext) -> str:
    """The solver: `solver.path` as this run resolved it (a converted .gguf's directory, `models/checkpoints.py`),
    or the tiny solver stage `solver` fitted."""
    if ctx.cfg.solver.path != "tiny":
        return ctx.cfg.solver.path
    return str(ctx.run_dir / "solver" / "fit" / "model")


def selfplay_start(ctx: StageContext) -> str:
    """The model self-play starts from (`selfplay.policy`): the solver, or the better SFT student."""
    if ctx.cfg.selfplay.policy == "sft":
        return best_sft_student(ctx.run_dir, list(ctx.cfg.sft.sources))
    return solver_model(ctx)
