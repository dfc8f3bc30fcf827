"""Stage `evaluate` (SPEC §7): a chosen model's accuracy on evaluation files.

Each file of `evaluate.sets` is read with its format recognised from the fields (`data/released.read_eval_rows`:
the release's math and Codeforces files, or ours): the release's chat wrapper and solver wording are removed and
the bare problem is rendered anew in the evaluated model's format (`prompts.solver`). Per set, `evaluate.n`
samples per problem (the paper: 16 at temperature 0.6, top-p 0.95) are graded with the verifiable rewards (a
thinking model's text after `</think>`): math → `evaluate/<set>/accuracy` (mean over all samples), code →
`evaluate/<set>/pass_at_1` (the mean of "passes every test" over all samples, the unbiased pass@1 from n samples).
A sample the checker could not decide (reference or sandbox failure) is unscorable: it is left out of the mean
and its share logged as `evaluate/<set>/unscorable_share`.
Outputs: `<set>/samples.jsonl` (every sample with its reward), `metrics.json`.
"""

from __future__ import annotations

import statistics

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.jsonl import write_jsonl
from promptcot_pl.data.released import read_eval_rows
from promptcot_pl.data.sources import source_stem
from promptcot_pl.generation.streamed import iter_rows
from promptcot_pl.runner.context import StageContext, log, write_json
from promptcot_pl.runner.difficulty import judged_samples
from promptcot_pl.runner.model_paths import best_sft_student, selfplay_start, solver_model
from promptcot_pl.verify.format import invalid_reason


def evaluated_model(ctx: StageContext) -> str:
    """The model `evaluate.model` names: a stage's output or a path."""
    match ctx.cfg.evaluate.model:
        case "solver":
            return solver_model(ctx)
        case "selfplay":
            stage = ctx.stage_output("selfplay")
            rounds = sorted(stage.glob("round_*/policy.txt"))
            return str(ctx.run_dir / rounds[-1].read_text().strip()) if rounds else selfplay_start(ctx)
        case "sft":  # the better student, as self-play starts from (runner/model_paths.py)
            return best_sft_student(ctx.run_dir, list(ctx.cfg.sft.sources))
    return ctx.cfg.evaluate.model


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.evaluate
    if not cfg.sets:
        raise ValueError("evaluate: no evaluation files; give evaluate.sets=[path.jsonl, ...]")
    model = evaluated_model(ctx)
    fmt = ctx.prompt_format("solver", model)
    sampling = SamplingConfig(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, seed=ctx.cfg.seed)
    sets = {source_stem(path): read_eval_rows(path)[: cfg.limit] for path in cfg.sets}
    rewards = ctx.rewards()
    metrics: dict[str, float] = ctx.check_rewards(rewards, [p for rows in sets.values() for p in rows],
                                                  fmt.thinking, "evaluate")
    with ctx.engines.open(model) as engine:
        for name, problems in sets.items():
            # generated, judged and written a shard at a time by the rank that generated it (runner/difficulty.py)
            shards = judged_samples(engine, fmt, problems, [p.problem for p in problems], sampling, rewards,
                                    ctx.stage_dir / name / "generated", ctx.cfg.engine.shard_prompts, model)
            write_jsonl(ctx.stage_dir / name / "samples.jsonl", (
                {"problem_id": problems[row["problem"]].id, "sample": row["sample"], "text": row["text"],
                 "reward": row["reward"], "finish_reason": row["finish_reason"],
                 "invalid": invalid_reason(row["text"], problems[row["problem"]].domain,
                                           row["finish_reason"] == "length", fmt.thinking)}
                for row in iter_rows(shards)))
            rows = [(row["reward"], row["program"], row["timed_out"]) for row in iter_rows(shards)]
            scores = [reward for reward, _, _ in rows]
            scored = [r for r in scores if r is not None]
            code = all(p.domain == "code" for p in problems)
            key = f"evaluate/{name}/{'pass_at_1' if code else 'accuracy'}"
            metrics[key] = statistics.fmean(scored) if scored else float("nan")
            metrics[f"evaluate/{name}/unscorable_share"] = (len(scores) - len(scored)) / max(len(scores), 1)
            programs = sum(ran for _, ran, _ in rows)
            if programs:
                metrics[f"evaluate/{name}/code_timeout_share"] = sum(t for _, _, t in rows) / programs
            metrics[f"evaluate/{name}/problems"] = float(len(problems))
            metrics[f"evaluate/{name}/samples"] = float(len(scores))
            log.info("evaluate/%s: %s %.4f over %d problems × %d samples (unscorable %.3f)", name, key.rsplit("/")[-1],
                     metrics[key], len(problems), cfg.n, metrics[f"evaluate/{name}/unscorable_share"])
    write_json(ctx.stage_dir / "metrics.json", {"model": str(model), **metrics})
    return metrics
