"""Stage `solver`: the fixed solver x → solution (SPEC §7) that the analyses measure difficulty with, that votes
on reference answers for synthesized math problems, and that self-play later starts from.

`solver.path: tiny` fits the offline tiny model (the same base and tokenizer as p_θ and q_φ) on the seed's worked
solutions; any other value is a Hugging Face model path (or Hub name) that is used as it is, untrained.
Output: `model/` — an HF checkpoint (tiny) or `model_path.txt` naming the given model — and `metrics.json`.
"""

from __future__ import annotations

from promptcot_pl.data.jsonl import read_jsonl
from promptcot_pl.data.prompts import solver_pairs
from promptcot_pl.data.records import Triple
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.runner.context import StageContext, log
from promptcot_pl.runner.fit import fit_pairs
from promptcot_pl.runner.model_paths import base_models


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.solver
    if cfg.path != "tiny":
        on_rank_zero((ctx.stage_dir / "model_path.txt").write_text, cfg.path + "\n")
        log.info("solver: using %s as it is", cfg.path)
        return {}
    seed_dir = ctx.triples_dir()
    train = read_jsonl(seed_dir / "train.jsonl", Triple)
    heldout = read_jsonl(seed_dir / "heldout.jsonl", Triple)
    base, _ = base_models(ctx, train)
    fmt = ctx.prompt_format("solver", base)
    pairs = solver_pairs(fmt, train)
    if not pairs:
        raise ValueError(f"{seed_dir / 'train.jsonl'}: no triple has a worked solution to fit the tiny solver on; "
                         "give solver.path=<HF model> instead")
    fit = fit_pairs(ctx, "fit", base, pairs, solver_pairs(fmt, heldout), epochs=cfg.epochs, batch_size=cfg.batch_size,
                    optim=cfg.optim, report_as="solver/nll_heldout", source=seed_dir / "train.jsonl")
    return {"solver/nll_heldout_init": fit["nll_init"], "solver/nll_heldout": fit["nll"],
            "solver/dropped_too_long": float(fit["dropped"])}
