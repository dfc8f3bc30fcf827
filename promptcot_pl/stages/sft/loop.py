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


def _student(ctx: StageContext, train: list[Triple]) -> str:
    match ctx.cfg.sft.student:
        case "solver":
            return solver_model(ctx)
        case "tiny":
            return base_models(ctx, train)[0]
    return ctx.cfg.sft.student


def _traces(ctx: StageContext, source: str, out: Path, student: PromptFormat) -> list[Trace]:
    """The source's filtered traces (cached in `out/traces.jsonl`: a rerun does not ask the teacher again)."""
    path = out / "traces.jsonl"
    if path.is_file():
        return read_jsonl(path, Trace)
    cfg = ctx.cfg.sft
    dropped: Counter = Counter()
    _, problems = load_problems(ctx, source)
    problems, dropped["contaminated"] = decontaminated(ctx, unique_prompts(problems, dropped), f"sft/{source}")
    problems = problems[: cfg.max_prompts]
    if cfg.teacher == "oracle":
        traces = oracle_traces(problems, student, dropped)
    else:
        teacher = solver_model(ctx) if cfg.teacher == "solver" else cfg.teacher
        with ctx.engine(teacher) as engine:
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
    with ctx.engine(model) as engine:
        return difficulty(engine, fmt, heldout, [t.problem for t in heldout],
                          replace(ctx.cfg.sft.eval, seed=ctx.cfg.seed), ctx.rewards(), out,
                          ctx.cfg.engine.shard_prompts, model).metrics(key)


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.sft
    seed_dir = ctx.triples_dir()
    train, heldout = read_jsonl(seed_dir / "train.jsonl", Triple), read_jsonl(seed_dir / "heldout.jsonl", Triple)
    student = _student(ctx, train)
    fmt = ctx.prompt_format("solver", student)
    # the reward that filters traces and grades the students, probed before anything runs
    metrics: dict[str, float] = ctx.check_rewards(ctx.rewards(), heldout, fmt.thinking, "sft")
    written = {source: _traces(ctx, source, ctx.stage_dir / source, fmt) for source in cfg.sources}
    fitting = {source: _fitting(ctx, fmt, items) for source, items in written.items()}
    traces = {source: kept for source, (kept, _) in fitting.items()}
    # too long for data.max_length: left out before the budget (the fit's own drop rule, so it drops none again)
    too_long = {source: len(written[source]) - len(traces[source]) for source in cfg.sources}
    lengths = {source: counts for source, (_, counts) in fitting.items()}
    budget = min(sum(v) for v in lengths.values())
    if len(traces) > 1:
        log.info("sft: every source keeps at most %d trained (completion) tokens (the smallest source's)", budget)
    before_path = ctx.stage_dir / "accuracy_before.json"
    if not before_path.is_file():
        write_json(before_path, _accuracy(ctx, student, heldout[: cfg.eval_limit], "sft/accuracy_heldout_before",
                                          ctx.stage_dir / "eval_before"))
    metrics.update(json.loads(before_path.read_text()))
    levels = [t.level for t in heldout[: cfg.eval_limit]]
    metrics |= ci_metrics("sft/accuracy_heldout_before", ctx.stage_dir / "eval_before", seed=ctx.cfg.seed,
                          levels=levels)
    before = metrics["sft/accuracy_heldout_before"]
    for source, items in traces.items():
        kept = _within_budget(items, lengths[source], budget, ctx.cfg.seed) if len(traces) > 1 else items
        length_of = {id(t): n for t, n in zip(items, lengths[source])}
        if not kept:
            raise ValueError(f"sft/{source}: no trace survived the filters ({ctx.stage_dir / source / 'funnel.json'})")
        fit = fit_pairs(ctx, f"{source}/student", student, [fit_pair(fmt, t) for t in kept],
                        solver_pairs(fmt, heldout), epochs=cfg.epochs, batch_size=cfg.batch_size, optim=cfg.optim,
                        packing=cfg.packing)  # masters: self-play may continue from a student
        accuracy = _accuracy(ctx, ctx.stage_dir / source / "student" / "model", heldout[: cfg.eval_limit],
                             f"sft/{source}/accuracy_heldout", ctx.stage_dir / source / "eval")
        after = accuracy[f"sft/{source}/accuracy_heldout"]
        metrics.update(accuracy)
        # 95% intervals: the student's accuracy and its paired gain over the student before SFT
        metrics |= ci_metrics(f"sft/{source}/accuracy_heldout", ctx.stage_dir / source / "eval",
                              ctx.stage_dir / "eval_before", ctx.cfg.seed, levels)
        metrics.update({f"sft/{source}/traces": float(len(kept)),
                        f"sft/{source}/trained_tokens": float(sum(length_of[id(t)] for t in kept)),
                        f"sft/{source}/nll_heldout": fit["nll"], f"sft/{source}/padding_waste": fit["padding_waste"],
                        f"sft/{source}/dropped_too_long": float(too_long[source] + fit["dropped"])})
        key = f"sft/{source}/accuracy_heldout"
        log.info("sft/%s: %d traces; held-out accuracy %.4f → %s, gain %s; padding waste %.3f", source, len(kept),
                 before, describe(after, metrics[f"{key}/ci_low"], metrics[f"{key}/ci_high"]),
                 describe(metrics[f"{key}/gain"], metrics[f"{key}/gain_ci_low"], metrics[f"{key}/gain_ci_high"],
                          signed=True), fit["padding_waste"])
    if {"synth", "seed"} <= set(cfg.sources):  # the paper's data claim: synthesized prompts vs seed prompts
        diff = interval(scores(ctx.stage_dir / "seed" / "eval"), scores(ctx.stage_dir / "synth" / "eval"),
                        seed=ctx.cfg.seed)
        metrics |= dict(zip(("sft/synth_minus_seed", "sft/synth_minus_seed/ci_low", "sft/synth_minus_seed/ci_high"),
                            diff))
        log.info("sft: synth − seed held-out accuracy %s (paired, 95%%)", describe(*diff, signed=True))
    return metrics
