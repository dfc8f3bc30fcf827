"""Stage `analyze` (SPEC §7): difficulty and diversity of the seed problems and of every synthesized set.

Sets: `seed` (held-out seed problems with their ground-truth targets, up to `analyze.max_problems`) and
`synth/<generator>` for each generator of stage `synth` (their reference answers or written tests). Per set: the
fixed solver's pass rate and mean solution length (`runner/difficulty.py`); for the arithmetic world the
structure the statements realise — level, column steps — and how often references agree with the oracle
(`stages/analyze/structure.py`); mean pairwise embedding distance and
distinct-1/2 (`stages/analyze/diversity.py`); between sets: 1 − cos of mean embeddings and an MDS picture.
Outputs: `table.md`, `metrics.json`, `set_distances.json`, `sets_mds.png` (all MLflow artifacts too).
"""

from __future__ import annotations

import math

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.jsonl import read_jsonl
from promptcot_pl.data.records import Problem, Triple
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.models.embeddings import Embedder
from promptcot_pl.runner.context import StageContext, log, write_json
from promptcot_pl.runner.difficulty import difficulty
from promptcot_pl.runner.model_paths import solver_model
from promptcot_pl.stages.analyze.diversity import distinct_n, mean_pairwise_distance, plot_mds, set_distances
from promptcot_pl.stages.analyze.structure import structural_difficulty

COLUMNS = (("pass_rate", "solver pass rate ↓ harder", "{:.3f}"), ("mean_tokens", "solution tokens", "{:.1f}"),
           ("oracle_level", "oracle level ↑", "{:.2f}"), ("oracle_column_steps", "oracle steps ↑", "{:.2f}"),
           ("oracle_readable", "oracle-readable", "{:.2f}"), ("reference_agreement", "reference = oracle", "{:.2f}"),
           ("pairwise_distance", "pairwise distance ↑", "{:.3f}"), ("distinct_1", "distinct-1", "{:.3f}"),
           ("distinct_2", "distinct-2", "{:.3f}"), ("distance_to_seed", "1 − cos to seed", "{:.4f}"),
           ("n_problems", "problems", "{:d}"))


def problem_sets(ctx: StageContext) -> dict[str, list]:
    limit = ctx.cfg.analyze.max_problems
    sets: dict[str, list] = {"seed": read_jsonl(ctx.triples_dir() / "heldout.jsonl", Triple)[:limit]}
    synth = ctx.stage_output("synth")
    for name in ctx.cfg.synth.generators:
        sets[f"synth/{name}"] = read_jsonl(synth / name / "problems.jsonl", Problem)[:limit]
    return sets


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| set | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, row in rows.items():
        cells = ["–" if isinstance(row[k], float) and math.isnan(row[k]) else fmt.format(row[k]) for k, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.analyze
    sets = problem_sets(ctx)
    embed = Embedder(ctx.cfg.synth.embedding_model, ctx.cfg.model.cache_dir)
    sampling = SamplingConfig(n=cfg.n_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, seed=ctx.cfg.seed)
    solver = solver_model(ctx)
    fmt = ctx.prompt_format("solver", solver)
    with ctx.engines.open(solver) as engine:
        rows: dict[str, dict[str, float]] = {}
        embeddings = {}
        for name, problems in sets.items():
            texts = [p.problem for p in problems]
            if not texts:
                log.warning("analyze: set %s is empty (every synthesized problem was filtered out)", name)
                continue
            hard = difficulty(engine, fmt, problems, texts, sampling, ctx.rewards(), ctx.stage_dir / "samples" / name,
                              ctx.cfg.engine.shard_prompts, solver)
            embeddings[name] = embed(texts)
            rows[name] = {"pass_rate": hard.pass_rate, "mean_tokens": hard.mean_tokens, "unscorable": hard.unscorable,
                          "unscorable_share": hard.unscorable_share, **structural_difficulty(problems),
                          "pairwise_distance": mean_pairwise_distance(embeddings[name]),
                          "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                          "n_problems": len(texts)}
    names, distances = set_distances(embeddings)
    for i, name in enumerate(names):
        rows[name]["distance_to_seed"] = float(distances[i, names.index("seed")]) if "seed" in names else math.nan
    text = table(rows)
    on_rank_zero((ctx.stage_dir / "table.md").write_text, text + "\n")
    write_json(ctx.stage_dir / "metrics.json", rows)
    write_json(ctx.stage_dir / "set_distances.json", {"sets": names, "distances": distances.tolist()})
    on_rank_zero(plot_mds, names, distances, ctx.stage_dir / "sets_mds.png", seed=ctx.cfg.seed)
    for artifact in ("table.md", "metrics.json", "set_distances.json", "sets_mds.png"):
        ctx.tracker.log_artifact(ctx.run_id, ctx.stage_dir / artifact)
    log.info("analyze: difficulty and diversity of the problem sets\n%s", text)
    return {f"analyze/{name}/{k}": float(v) for name, row in rows.items() for k, v in row.items()
            if not (isinstance(v, float) and math.isnan(v))}
