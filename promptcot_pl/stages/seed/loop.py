"""Stage `seed`: the domain corpus → `triples.jsonl`, split into `train.jsonl` and `heldout.jsonl`."""

from __future__ import annotations

from promptcot_pl.data.jsonl import write_jsonl
from promptcot_pl.data.records import Triple
from promptcot_pl.data.released import read_problem_generation_rows
from promptcot_pl.data.sources import read_records
from promptcot_pl.domains import build_domain, split_heldout, verified_as
from promptcot_pl.runner.context import StageContext, log
from promptcot_pl.runner.problems import decontaminated


def load_triples(ctx: StageContext) -> list[Triple]:
    domain = ctx.cfg.domain
    if domain.source == "builtin":
        return build_domain(domain.name, domain.n_items, ctx.cfg.seed)
    assert domain.path is not None  # a file source needs one (checked at load)
    match domain.source:
        case "triples":
            return read_records(domain.path, Triple)[: domain.n_items]
        case "promptcot":
            return read_problem_generation_rows(domain.path, verified_as(domain.name))[: domain.n_items]
    raise ValueError(f"domain.source {domain.source!r}")


def run(ctx: StageContext) -> dict[str, float]:
    triples = load_triples(ctx)
    train, heldout = split_heldout(triples, ctx.cfg.domain.heldout_fraction, ctx.cfg.seed, ctx.cfg.domain.n_heldout)
    train, contaminated = decontaminated(ctx, train, "seed", heldout=False)  # training on an evaluation problem is a leak
    write_jsonl(ctx.stage_dir / "triples.jsonl", triples)
    write_jsonl(ctx.stage_dir / "train.jsonl", train)
    write_jsonl(ctx.stage_dir / "heldout.jsonl", heldout)
    log.info("seed: %d %s triples (%d train, %d held out) in %s", len(triples), ctx.cfg.domain.name,
             len(train), len(heldout), ctx.stage_dir)
    metrics = {"seed/n_triples": len(triples), "seed/n_train": len(train), "seed/n_heldout": len(heldout)}
    return metrics | ({"seed/train_contaminated": float(contaminated)} if ctx.cfg.synth.eval_sets else {})
