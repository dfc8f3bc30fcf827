"""Stage `sft` (SPEC §6): a student learns from a teacher's traces on prompts; no reward, no preference.

For every source in `sft.sources` ("synth": the synthesized problems; "seed": the seed's training problems):
  traces   duplicate prompts removed → the teacher answers each prompt (`stages/sft/traces.py`: the domain's reference
           solver, the solver model, or any HF model through the engine) → format filter → optional correctness
           filter; every drop counted (`<source>/funnel.json`), `<source>/traces.jsonl` with provenance and
           `<source>/traces_released.jsonl` in the released prompt/completion format
  budget   with several sources, each keeps the same number of trained (completion) tokens (the smallest
           source's; traces a fit would drop as too long are left out first), so the
           comparison is about which prompts, not how much data
  fit      the student (the solver by default) by masked NLL on the completions, exactly packed
           (`runner/fit.py`; resumable; padding waste reported)
  evaluate held-out accuracy (the seed's held-out problems, ground-truth answers; mean over n samples) of the
           student before and after
Metrics: `sft/<source>/accuracy_heldout` (with 95% intervals `…/ci_low`, `…/ci_high`, per level, and its gain over
the student before: `…/gain`, `…/gain_ci_low`, `…/gain_ci_high`), `…_before`, `…/traces`, `…/trained_tokens`,
`…/padding_waste`; with sources synth and seed, `sft/synth_minus_seed` and its interval.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

from promptcot_pl.data.collate import IGNORE, encode_pair
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.jsonl import read_jsonl, write_jsonl
from promptcot_pl.data.prompts import solver_pairs
from promptcot_pl.data.records import Trace, Triple
from promptcot_pl.generation.streamed import ShardedEngine
from promptcot_pl.runner.confidence import ci_metrics, describe, interval, scores
from promptcot_pl.runner.context import StageContext, log, write_json
from promptcot_pl.runner.difficulty import difficulty
from promptcot_pl.runner.fit import fit_pairs
from promptcot_pl.runner.model_paths import base_models, solver_model
from promptcot_pl.runner.problems import decontaminated, load_problems
from promptcot_pl.stages.sft.traces import (
    engine_traces,
    fit_pair,
    keep_correct,
    oracle_traces,
    released_format,
    unique_prompts,
)


def disjoint_halves(train: list[Triple], seed: int) -> tuple[list[Triple], list[Triple]]:
    """The seed's training problems in two seeded halves: the `disjoint` student learns from the first, the seed
    arm's prompts come from the second, so the student has seen neither SFT source."""
    order = sorted(train, key=lambda t: t.id)
    random.Random(f"disjoint/{seed}").shuffle(order)
    return order[: len(order) // 2], order[len(order) // 2:]


def _student(ctx: StageContext, train: list[Triple], heldout: list[Triple]) -> str:
    match ctx.cfg.sft.student:
        case "solver":
            return solver_model(ctx)
        case "tiny":
            return base_models(ctx, train)[0]
        case "disjoint":
            # a solver of its own, fitted as stage solver fits one on half of the seed's problems, for as many
            # optimizer steps (twice the epochs): with solver.epochs on half the data the quickstart's student
            # stopped at 342 steps and 0.02 held-out accuracy, too weak for either arm to move
            base, solver = base_models(ctx, train)[0], ctx.cfg.solver
            fmt = ctx.prompt_format("solver", base)
            fit_pairs(ctx, "disjoint", base, solver_pairs(fmt, disjoint_halves(train, ctx.cfg.seed)[0]),
                      solver_pairs(fmt, heldout), epochs=2 * solver.epochs, batch_size=solver.batch_size,
                      optim=solver.optim)
            return str(ctx.stage_dir / "disjoint" / "model")
    return ctx.cfg.sft.student


def _traces(ctx: StageContext, source: str, out: Path, student: PromptFormat, replay: bool = False) -> list[Trace]:
    """The source's filtered traces (cached in `out/traces.jsonl`: a rerun does not ask the teacher again).
    The seed source of a `disjoint` student is the half it was not fitted on, unless `replay` (all of it)."""
    path = out / "traces.jsonl"
    if path.is_file():
        return read_jsonl(path, Trace)
    cfg = ctx.cfg.sft
    dropped: Counter = Counter()
    _, problems = load_problems(ctx, source)
    if source == "seed" and cfg.student == "disjoint" and not replay:  # the half the student was not fitted on
        unseen = {t.id for t in disjoint_halves(read_jsonl(ctx.triples_dir() / "train.jsonl", Triple), ctx.cfg.seed)[1]}
        problems = [p for p in problems if p.id in unseen]
    problems, dropped["contaminated"] = decontaminated(ctx, unique_prompts(problems, dropped), f"sft/{out.name}")
    problems = problems[: cfg.max_prompts]
    if cfg.teacher == "oracle":
        traces = oracle_traces(problems, student, dropped)
    else:
        teacher = solver_model(ctx) if cfg.teacher == "solver" else cfg.teacher
        with ctx.engines.open(teacher) as engine:
            sharded = ShardedEngine(engine, out / "generated", ctx.cfg.engine.shard_prompts, desc=f"sft/{source} traces")
            traces = engine_traces(sharded, ctx.prompt_format("teacher", teacher), student, problems,
                                   replace(cfg.traces, seed=ctx.cfg.seed), str(teacher), dropped)
    if cfg.filter_correct:
        traces = keep_correct(traces, problems, dropped, ctx.rewards())
    prompts = len(problems) + dropped["duplicate_prompt"]
    funnel = {"prompts": prompts, "traces": len(traces), "dropped": dict(sorted(dropped.items()))}
    write_json(out / "funnel.json", funnel)
    ctx.tracker.log_artifact(ctx.run_id, out / "funnel.json", source)  # the data funnel, beside the metrics
    ctx.tracker.log_metrics(ctx.run_id, {f"sft/{source}/prompts": prompts,
                                         **{f"sft/{source}/dropped_{k}": v for k, v in dropped.items()}})
    write_jsonl(out / "traces_released.jsonl", released_format(traces, student))
    write_jsonl(path, traces)
    log.info("sft/%s: %d prompts → %d traces (teacher %s; dropped: %s)", source, len(problems), len(traces),
             cfg.teacher, ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "none")
    return traces


def _fitting(ctx: StageContext, fmt: PromptFormat, traces: list[Trace]) -> tuple[list[Trace], list[int]]:
    """The traces a fit keeps (`encode_pair`'s rule: prompt + completion + EOS within data.max_length) and the
    tokens each trains on (its completion and EOS, not its prompt): the equal budget counts only trained tokens."""
    kept, lengths = [], []
    for trace in traces:
        item = encode_pair(fmt.tokenizer, *fit_pair(fmt, trace), ctx.cfg.data.max_length)
        if item is not None:
            kept.append(trace)
            lengths.append(sum(label != IGNORE for label in item.labels))
    return kept, lengths


def _within_budget(traces: list[Trace], lengths: list[int], budget: int, seed: int) -> list[Trace]:
    """A seeded random subset of `traces` whose tokens sum to at most `budget`."""
    order = list(range(len(traces)))
    random.Random(seed).shuffle(order)
    kept, used = [], 0
    for i in order:
        if used + lengths[i] <= budget:
            kept.append(traces[i])
            used += lengths[i]
    return kept


def _accuracy(ctx: StageContext, model: str | Path, heldout: list[Triple], key: str, out: Path) -> dict[str, float]:
    """Held-out accuracy under `key`, with its unscorable share and per level (samples streamed to `out`)."""
    fmt = ctx.prompt_format("solver", model)
    with ctx.engines.open(model) as engine:
        return difficulty(engine, fmt, heldout, [t.problem for t in heldout],
                          replace(ctx.cfg.sft.eval, seed=ctx.cfg.seed), ctx.rewards(), out,
                          ctx.cfg.engine.shard_prompts, model).metrics(key)


def _before(ctx: StageContext, student: str, heldout: list[Triple], key: str, out: Path) -> dict[str, float]:
    """The student's held-out accuracy before SFT (`key`), with its intervals; cached for a rerun."""
    path = out.parent / f"{out.name}.json"
    if not path.is_file():
        write_json(path, _accuracy(ctx, student, heldout, key, out))
    levels = [t.level for t in heldout]
    return json.loads(path.read_text()) | ci_metrics(key, out, seed=ctx.cfg.seed, levels=levels)


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.sft
    seed_dir = ctx.triples_dir()
    train, heldout = read_jsonl(seed_dir / "train.jsonl", Triple), read_jsonl(seed_dir / "heldout.jsonl", Triple)
    evaluated = heldout[: cfg.eval_limit]
    student = _student(ctx, train, heldout)
    fmt = ctx.prompt_format("solver", student)
    # the reward that filters traces and grades the students, probed before anything runs
    metrics: dict[str, float] = ctx.check_rewards(ctx.rewards(), heldout, fmt.thinking, "sft")
    # arm → (source of its prompts, its student, the evaluation of that student before SFT)
    arms = {source: (source, student, ctx.stage_dir / "eval_before") for source in cfg.sources}
    if cfg.replay_control:  # the solver on the seed's problems, which it was fitted on: its own data again
        arms["replay"] = ("seed", solver_model(ctx), ctx.stage_dir / "replay" / "eval_before")
    written = {arm: _traces(ctx, source, ctx.stage_dir / arm, fmt, replay=arm == "replay")
               for arm, (source, _, _) in arms.items()}
    fitting = {arm: _fitting(ctx, fmt, items) for arm, items in written.items()}
    # too long for data.max_length: left out before the budget (the fit's own drop rule, so it drops none again)
    too_long = {arm: len(written[arm]) - len(kept) for arm, (kept, _) in fitting.items()}
    budget = min(sum(lengths) for _, lengths in fitting.values())
    if len(arms) > 1:
        log.info("sft: every arm keeps at most %d trained (completion) tokens (the smallest arm's)", budget)
    metrics |= _before(ctx, student, evaluated, "sft/accuracy_heldout_before", ctx.stage_dir / "eval_before")
    if cfg.replay_control:
        metrics |= _before(ctx, arms["replay"][1], evaluated, "sft/replay/accuracy_heldout_before",
                           ctx.stage_dir / "replay" / "eval_before")
    levels = [t.level for t in evaluated]
    for arm, (items, lengths) in fitting.items():
        _, base, before_dir = arms[arm]
        kept = _within_budget(items, lengths, budget, ctx.cfg.seed) if len(arms) > 1 else items
        length_of = {id(t): n for t, n in zip(items, lengths)}
        if not kept:
            raise ValueError(f"sft/{arm}: no trace survived the filters ({ctx.stage_dir / arm / 'funnel.json'})")
        # masters are kept: self-play may continue from a student
        fit = fit_pairs(ctx, f"{arm}/student", base, [fit_pair(fmt, t) for t in kept],
                        solver_pairs(fmt, heldout), epochs=cfg.epochs, batch_size=cfg.batch_size, optim=cfg.optim,
                        packing=cfg.packing, source=ctx.stage_dir / arm / "traces.jsonl")
        key = f"sft/{arm}/accuracy_heldout"
        metrics |= _accuracy(ctx, ctx.stage_dir / arm / "student" / "model", evaluated, key,
                             ctx.stage_dir / arm / "eval")
        # 95% intervals: the student's accuracy and its paired gain over the same student before SFT
        metrics |= ci_metrics(key, ctx.stage_dir / arm / "eval", before_dir, ctx.cfg.seed, levels)
        metrics.update({f"sft/{arm}/traces": float(len(kept)),
                        f"sft/{arm}/trained_tokens": float(sum(length_of[id(t)] for t in kept)),
                        f"sft/{arm}/nll_heldout": fit["nll"], f"sft/{arm}/padding_waste": fit["padding_waste"],
                        f"sft/{arm}/dropped_too_long": float(too_long[arm] + fit["dropped"])})
        log.info("sft/%s: %d traces; held-out accuracy %s, gain %s; padding waste %.3f", arm, len(kept),
                 describe(metrics[key], metrics[f"{key}/ci_low"], metrics[f"{key}/ci_high"]),
                 describe(metrics[f"{key}/gain"], metrics[f"{key}/gain_ci_low"], metrics[f"{key}/gain_ci_high"],
                          signed=True), fit["padding_waste"])
    if {"synth", "seed"} <= set(cfg.sources):  # the paper's data claim: synthesized prompts vs seed prompts
        diff = interval(scores(ctx.stage_dir / "seed" / "eval"), scores(ctx.stage_dir / "synth" / "eval"),
                        seed=ctx.cfg.seed)
        metrics |= dict(zip(("sft/synth_minus_seed", "sft/synth_minus_seed/ci_low", "sft/synth_minus_seed/ci_high"),
                            diff))
        log.info("sft: synth − seed held-out accuracy %s (paired, 95%%)", describe(*diff, signed=True))
    return metrics
