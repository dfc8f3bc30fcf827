"""Stage `selfplay` (SPEC §5): the policy improves itself on synthesized problems from verifiable rewards.

The policy starts from the solver (stage `solver`) or, with `selfplay.policy: sft`, the better SFT student. Round r (1..rounds), seeded with seed + r:
  rollouts  `selfplay.max_problems` synthesized problems (a new draw each round) × n rollouts (engine), each
            checked for format and scored (math: equivalence to the reference answer; code: all unit tests)
  pairs     problems whose pass rate lies in the window → chosen/rejected pairs (`stages/selfplay/pairs.py`)
  fit       DPO from the round's starting policy, which is also the reference (log-probs precomputed once by a
            batched no-grad pass, or a frozen copy — `selfplay.dpo.reference`)
  evaluate  held-out accuracy (the seed's held-out problems, ground-truth answers; mean over n samples) with a
            95% interval, and its paired gain over round 0 with one (`runner/confidence.py`)
Outputs per round under `round_NNN/`: rollouts.jsonl, pairs.jsonl, pairs_released.jsonl (the release's source/prompt/chosen/rejected layout),
outcomes.jsonl (per problem), model/ (HF), metrics.json + DONE; `round_000/` holds the evaluation before
self-play. A rerun resumes after the last finished round; an interrupted round keeps its rollouts and
reference log-probs and refits from the round's start (same seed, so it equals an uninterrupted round).
Also `history.jsonl` and `accuracy.png` (held-out accuracy against round).
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.jsonl import read_jsonl, write_jsonl
from promptcot_pl.data.records import Pair, Problem, Rollout, Triple
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.generation import ServedEngine
from promptcot_pl.generation.streamed import ShardedEngine
from promptcot_pl.runner.confidence import ci_metrics, describe
from promptcot_pl.runner.context import StageContext, log
from promptcot_pl.runner.difficulty import difficulty
from promptcot_pl.runner.fit import drop_masters
from promptcot_pl.runner.model_paths import selfplay_start
from promptcot_pl.runner.problems import load_problems
from promptcot_pl.runner.steps import ResumableSteps
from promptcot_pl.stages.selfplay.config import SelfPlayConfig
from promptcot_pl.stages.selfplay.dpo_fit import fit_dpo
from promptcot_pl.stages.selfplay.grpo_fit import fit_online
from promptcot_pl.stages.selfplay.pairs import PassWindow, build_pairs, released_format, summarize
from promptcot_pl.stages.selfplay.rollouts import rollouts
from promptcot_pl.verify.rewards import Rewards

if TYPE_CHECKING:  # annotation only: the experiment config sits above this floor (docs/architecture.md)
    from promptcot_pl.experiment import ExperimentConfig


def window(sp: SelfPlayConfig) -> PassWindow:
    return PassWindow(sp.pass_low, sp.pass_high, sp.pass_low_inclusive, sp.pass_high_inclusive)


def _draw(problems: list[Problem], n: int, seed: int) -> list[Problem]:
    return random.Random(seed).sample(problems, min(n, len(problems)))


def _rollouts(ctx: StageContext, engine, fmt: PromptFormat, problems: list[Problem], out: Path,
              seed: int, rewards: Rewards) -> list[Rollout]:
    path = out / "rollouts.jsonl"
    if path.is_file():  # an interrupted round keeps its rollouts
        return read_jsonl(path, Rollout)
    sampling = ctx.cfg.selfplay.rollouts
    sharded = ShardedEngine(engine, out / "generated", ctx.cfg.engine.shard_prompts, desc=f"rollouts {out.name}")
    rows = rollouts(sharded, fmt, problems, replace(sampling, seed=seed), rewards)
    write_jsonl(path, rows)
    return rows


def _evaluate(ctx: StageContext, engine: ServedEngine, fmt: PromptFormat, heldout: list[Triple], rewards: Rewards,
              out: Path) -> dict[str, float]:
    """Mean reward over n samples per held-out problem (streamed under `out/eval`), with its unscorable share and
    per level; the same sampling seed every round, so rounds compare."""
    return difficulty(engine, fmt, heldout, [t.problem for t in heldout], eval_sampling(ctx.cfg),
                      rewards, out / "eval", ctx.cfg.engine.shard_prompts,
                      engine.path).metrics("selfplay/accuracy_heldout")


def _judge(ctx: StageContext, engine: ServedEngine, fmt: PromptFormat, problems: list[Problem], rewards: Rewards,
           out: Path):
    """The served policy's samples on `problems` with the evaluation's sampling, judged (streamed to `out`)."""
    return difficulty(engine, fmt, problems, [p.problem for p in problems], eval_sampling(ctx.cfg), rewards, out,
                      ctx.cfg.engine.shard_prompts, engine.path)


def eval_sampling(cfg: ExperimentConfig) -> SamplingConfig:
    """`selfplay.eval` with every round's seed. A student chosen by its accuracy on these problems is evaluated
    anew on other samples (another seed), so that round 0 does not inherit the luck it was chosen for and later
    rounds regress from it."""
    return replace(cfg.selfplay.eval, seed=cfg.seed + (1 if cfg.selfplay.policy == "sft" else 0))


def _pairs(ctx: StageContext, engine: ServedEngine, fmt: PromptFormat, drawn: list[Problem], out: Path, r: int,
           rewards: Rewards, canaries: dict[str, float]) -> tuple[list[Pair], list, dict[str, float]]:
    """Round r's rollouts on `drawn`, judged, and the pairs of the problems in the window, written under `out`
    (pairs.jsonl, pairs_released.jsonl, outcomes.jsonl); (pairs, per-problem outcomes, the round's counts with
    its reward `canaries`)."""
    sp = ctx.cfg.selfplay
    table = _rollouts(ctx, engine, fmt, drawn, out, seed=ctx.cfg.seed + r, rewards=rewards)
    pairs, outcomes = build_pairs(drawn, table, window(sp), fmt, seed=ctx.cfg.seed + r,
                                  min_scored=sp.min_scored)
    for p in pairs:
        p.meta["round"] = r
    write_jsonl(out / "pairs.jsonl", pairs)
    write_jsonl(out / "pairs_released.jsonl", released_format(pairs, fmt))
    write_jsonl(out / "outcomes.jsonl", [o.__dict__ for o in outcomes])
    counts = summarize(outcomes)
    scored = [x.reward for x in table if x.reward is not None]
    metrics = {f"selfplay/{k}": float(v) for k, v in counts.items()} | canaries
    metrics["selfplay/rollout_pass_rate"] = sum(scored) / len(scored) if scored else float("nan")
    # logged, not only configured: DPO reshapes the rollouts' temperature, the evaluation reads another
    metrics["selfplay/rollout_temperature"] = sp.rollouts.temperature
    metrics["selfplay/eval_temperature"] = eval_sampling(ctx.cfg).temperature
    programs = [x for x in table if "timeout" in x.meta and any(p.domain == "code" for p in drawn)]
    if programs:
        metrics["selfplay/code_timeout_share"] = sum(bool(x.meta["timeout"]) for x in programs) / len(programs)
    log.info("selfplay round %d: %d problems × %d rollouts, pass rate %.3f → %d problems in window %s → %d pairs "
             "(%s)", r, len(drawn), sp.rollouts.n, metrics["selfplay/rollout_pass_rate"],
             counts.get("problems_kept", 0), window(sp), counts["pairs"],
             ", ".join(f"{k.removeprefix('problems_')} {v}" for k, v in counts.items() if k.startswith("problems_")))
    return pairs, outcomes, metrics


def _round(ctx: StageContext, engine: ServedEngine, fmt: PromptFormat, policy: Path, problems: list[Problem],
           heldout: list[Triple], r: int, rewards: Rewards, canaries: dict[str, float]) -> tuple[Path, dict[str, float]]:
    sp, out = ctx.cfg.selfplay, ctx.stage_dir / f"round_{r:03d}"
    drawn = _draw(problems, sp.max_problems, ctx.cfg.seed * 1000 + r)
    # every round's reward is probed on that round's problems (round 1's was, before the engine started)
    canaries = canaries if r == 1 else ctx.check_rewards(rewards, drawn, fmt.thinking, f"selfplay round {r}", step=r)
    out.mkdir(parents=True, exist_ok=True)
    engine.serve(policy)
    if sp.optimizer == "grpo":
        return _online_round(ctx, engine, fmt, policy, drawn, heldout, r, rewards, canaries)
    pairs, outcomes, metrics = _pairs(ctx, engine, fmt, drawn, out, r, rewards, canaries)
    # the problems the round practises on, judged with the evaluation's sampling before and after the fit (fresh
    # samples: their pass rates were selected on the rollouts, so these would regress to the mean)
    practised = [p for p, o in zip(drawn, outcomes) if o.status == "kept"]
    if practised:
        _judge(ctx, engine, fmt, practised, rewards, out / "practised_before")
    if pairs:
        with ctx.engines.released(f"self-play round {r}: reference scoring and DPO fit"):
            fit = fit_dpo(ctx, policy, pairs, out, r)
        metrics.update({k if "/" in k else f"selfplay/{k}": v for k, v in fit.items()})
        policy = out / "model"
    else:
        log.warning("selfplay round %d: no pairs (no problem's pass rate in %s): the policy is unchanged", r, window(sp))
    engine.serve(policy)
    metrics.update(_evaluate(ctx, engine, fmt, heldout, rewards, out))
    if practised:
        metrics.update(_judge(ctx, engine, fmt, practised, rewards, out / "practised_after")
                       .metrics("selfplay/accuracy_practised"))
        metrics |= ci_metrics("selfplay/accuracy_practised", out / "practised_after", out / "practised_before",
                              ctx.cfg.seed, [p.level or "" for p in practised])
    # relative: the run dir may move
    on_rank_zero((out / "policy.txt").write_text, f"{os.path.relpath(policy, ctx.run_dir)}\n")
    return policy, metrics


def _online_round(ctx: StageContext, engine: ServedEngine, fmt: PromptFormat, policy: Path, drawn: list[Problem],
                  heldout: list[Triple], r: int, rewards: Rewards,
                  canaries: dict[str, float]) -> tuple[Path, dict[str, float]]:
    """A GRPO round: the engine stays awake through the fit (it samples every step) and serves the policy's
    weights as they change; then the exported model is evaluated like a DPO round's."""
    out = ctx.stage_dir / f"round_{r:03d}"
    fit = fit_online(ctx, engine, fmt, policy, drawn, out, r, rewards)
    metrics = dict(canaries) | {k if "/" in k else f"selfplay/{k}": v for k, v in fit.items()}
    metrics["selfplay/rollout_temperature"] = ctx.cfg.selfplay.rollouts.temperature
    metrics["selfplay/eval_temperature"] = eval_sampling(ctx.cfg).temperature
    policy = out / "model"
    engine.serve(policy)
    metrics.update(_evaluate(ctx, engine, fmt, heldout, rewards, out))
    on_rank_zero((out / "policy.txt").write_text, f"{os.path.relpath(policy, ctx.run_dir)}\n")
    return policy, metrics


def _with_interval(metrics: dict[str, float], key: str = "selfplay/accuracy_heldout") -> str:
    """"0.412 [0.371, 0.455]" and, after round 0, ", gain +0.036 [+0.010, +0.061]" (95% intervals)."""
    text = describe(metrics[key], metrics[f"{key}/ci_low"], metrics[f"{key}/ci_high"])
    if f"{key}/gain" in metrics:
        text += ", gain " + describe(metrics[f"{key}/gain"], metrics[f"{key}/gain_ci_low"],
                                     metrics[f"{key}/gain_ci_high"], signed=True)
    return text


def _with_targets(problems: list[Problem]) -> list[Problem]:
    """Problems a reward can be trusted on: math with an answer, code with tests whose expected outputs are not
    all the same (one constant print would pass them all: the `prints_first_output` canary)."""
    return [p for p in problems
            if (p.answer if p.domain == "math" else p.tests and len({t["output"].strip() for t in p.tests}) > 1)]


def run(ctx: StageContext) -> dict[str, float]:
    sp = ctx.cfg.selfplay
    problems_path, problems = load_problems(ctx, ctx.cfg.selfplay.problems)
    loaded, problems = len(problems), _with_targets(problems)
    if len(problems) < loaded:
        log.info("selfplay: %d of %d problems left out (no answer, no tests, or tests a constant print passes)",
                 loaded - len(problems), loaded)
    if not problems:
        raise ValueError(f"{problems_path}: no problem has a reference answer or tests to score against")
    heldout = read_jsonl(ctx.triples_dir() / "heldout.jsonl", Triple)[: sp.eval_limit]
    policy = Path(selfplay_start(ctx))
    log.info("selfplay: the policy starts from %s", policy)
    if sp.policy == "sft":  # the other students' masters: no fit reads them
        on_rank_zero(drop_masters, [policy], sorted((ctx.run_dir / "sft").glob("*/student/model")))
    fmt = ctx.prompt_format("solver", policy)  # the policy's tokenizer, the same in every round
    rewards = ctx.rewards()
    first = next((r for r in range(1, sp.rounds + 1) if not (ctx.stage_dir / f"round_{r:03d}" / "DONE").is_file()), None)
    # the reward is probed before the engine starts: a hackable reward stops the stage before any work
    canaries = ctx.check_rewards(rewards, _draw(problems, sp.max_problems, ctx.cfg.seed * 1000 + 1), fmt.thinking,
                                 "selfplay round 1", step=1) if first == 1 else {}
    steps = ResumableSteps(ctx, ctx.stage_dir, "round", "round", sp.rounds)
    with ctx.engines.open(policy, served=True) as engine:
        for step in steps:
            r, out = step.index, step.dir
            if step.done:  # resume after the last finished round
                policy = ctx.run_dir / (out / "policy.txt").read_text().strip() if r else policy
                continue
            if r == 0:
                metrics = _evaluate(ctx, engine, fmt, heldout, rewards, out)
            else:
                policy, metrics = _round(ctx, engine, fmt, policy, problems, heldout, r, rewards, canaries)
            # 95% intervals: the round's accuracy, and its paired gain over the starting policy (round 0)
            metrics |= ci_metrics("selfplay/accuracy_heldout", out / "eval",
                                  ctx.stage_dir / "round_000" / "eval" if r else None, ctx.cfg.seed,
                                  [t.level for t in heldout])
            steps.finish(step, metrics)
            # the next round continues from `policy` only
            on_rank_zero(drop_masters, [policy], sorted(ctx.stage_dir.glob("round_*/model")))
            if ctx.report is not None and r > 0:
                ctx.report(r, metrics)
            log.info("selfplay round %d: held-out accuracy %s%s", r, _with_interval(metrics), ctx.engines.summary())
            if "selfplay/accuracy_practised" in metrics:
                log.info("selfplay round %d: accuracy on its %d practised problems %s", r,
                         int(metrics["selfplay/problems_kept"]), _with_interval(metrics, "selfplay/accuracy_practised"))
    history = steps.history
    from promptcot_pl.stages.selfplay.plot import plot_accuracy

    ctx.tracker.log_artifact(ctx.run_id, on_rank_zero(plot_accuracy, history, ctx.stage_dir / "accuracy.png"))
    before, after = history[0]["selfplay/accuracy_heldout"], history[-1]["selfplay/accuracy_heldout"]
    # the last round's interval of its gain over round 0 (its estimate is `after - before`, the same number)
    last = {k.replace("/accuracy_heldout/gain", "/accuracy_gain"): v for k, v in history[-1].items()
            if k.startswith("selfplay/accuracy_heldout/gain_ci")}
    return {"selfplay/accuracy_heldout_before": before, "selfplay/accuracy_heldout": after,
            "selfplay/accuracy_gain": after - before, **last,
            "selfplay/pairs_total": float(sum(h.get("selfplay/pairs", 0.0) for h in history))}
