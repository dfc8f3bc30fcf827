"""Stage `synth` (SPEC §4): concept sets → (z, x) ~ p_θ(·|c) → filters → verifiable targets → `problems.jsonl`.

Concept sets are drawn once (PromptCoT 1.0 sampler over the seed's concept bank) and given to every generator in
`synth.generators` — `em` (p_θ after the last EM iteration), `coldstart` (p_θ before EM) and/or `no_rationale`
(the p_θ stage em fits on c → x alone, `em.no_rationale_baseline`: it writes a problem with no rationale first) —
so the analyses compare their problem sets on the same c. Per generator, under `synth/<generator>/`:
`generated.jsonl` (raw outputs), `problems.jsonl` (kept problems with provenance), `funnel.json` (how many
survived each filter and why the rest were dropped) and, when asked for, `problems_released.jsonl` (PromptCoT's
problem-generation format). `synth/problems.jsonl` is the first generator's set, the one later stages train on.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.concepts import ConceptBank, ConceptSampler
from promptcot_pl.data.filters import NgramIndex, degenerate_reason, exact_duplicates, near_duplicates
from promptcot_pl.data.jsonl import iter_json_rows, read_jsonl, write_jsonl
from promptcot_pl.data.prompts import (
    PROBLEM_END,
    parse_marked,
    problem_given_rationale_example,
    prompt_model_prompt,
)
from promptcot_pl.data.records import Problem, Triple
from promptcot_pl.data.released import read_concept_rows, to_problem_generation_row
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.domains import verified_as
from promptcot_pl.domains.distinct import item_id
from promptcot_pl.domains.math_oracle import solve
from promptcot_pl.generation.streamed import ShardedEngine, generate_shards, iter_rows
from promptcot_pl.models.embeddings import Embedder
from promptcot_pl.runner.context import StageContext, log, write_json
from promptcot_pl.runner.model_paths import solver_model
from promptcot_pl.runner.problems import eval_problems
from promptcot_pl.stages.synth.targets import majority_references, written_tests

FUNNEL = ("generated", "parsed", "unique", "near_unique", "not_degenerate", "decontaminated", "kept")


def generator_model(ctx: StageContext, name: str) -> Path:
    """p_θ of `coldstart`, of the last finished EM iteration, or the no-rationale p_θ of stage em."""
    if name == "coldstart":
        return ctx.stage_output("coldstart") / "prompt_model" / "model"
    if name == "no_rationale":
        return ctx.stage_output("em") / "baseline" / "prompt_model"
    em = ctx.stage_output("em")
    iterations = sorted(em.glob("iter_*/prompt_model"))
    return iterations[-1] if iterations else ctx.stage_output("coldstart") / "prompt_model" / "model"


def concept_sets(ctx: StageContext, train: list[Triple]) -> list[tuple[list[str], str]]:
    """The concept sets c every generator is given: drawn from the seed's concept bank, or read from
    `synth.concepts_path` (the release's concept rows, or ours)."""
    path = ctx.stage_dir / "concept_sets.jsonl"
    cfg = ctx.cfg.synth
    if not path.is_file() and cfg.concepts_path:
        rows = read_concept_rows(cfg.concepts_path)[: cfg.n_concept_sets]
        default = Counter(t.level for t in train).most_common(1)[0][0] if train else "unknown"
        write_jsonl(path, [{"concepts": r.concepts, "level": r.level or default} for r in rows])
        log.info("synth: %d concept sets from %s", len(rows), cfg.concepts_path)
    if not path.is_file():
        saved = ctx.triples_dir() / "concept_bank.npz"  # stage annotate builds one from the annotated concepts
        bank = ConceptBank.load(saved) if saved.is_file() else ConceptBank.from_triples(
            train, Embedder(cfg.embedding_model, ctx.cfg.model.cache_dir))
        sampler = ConceptSampler(bank, size=cfg.concepts_per_set, temperature=cfg.concept_temperature,
                                 cooccurrence_weight=cfg.cooccurrence_weight,
                                 similarity_weight=cfg.similarity_weight, levels=cfg.levels)
        rng = random.Random(ctx.cfg.seed)
        write_jsonl(path, [{"concepts": c, "level": lv} for c, lv in
                           (sampler.sample(rng) for _ in range(cfg.n_concept_sets))])
    return [(row["concepts"], row["level"]) for _, row in iter_json_rows(path)]


def _generate(ctx: StageContext, model: Path, sets: list[tuple[list[str], str]], out: Path) -> list[dict]:
    """Raw (z, x) samples of every concept set: generated in shards under `generated/` (a killed stage resumes
    from the finished ones), then joined into `generated.jsonl`."""
    path = out / "generated.jsonl"
    if not path.is_file():
        fmt = ctx.prompt_format("prompt_model", model)
        domain = verified_as(ctx.cfg.domain.name)
        if out.name == "no_rationale":  # c → x: the prompt opens the problem block, the sample closes it
            prompts = [problem_given_rationale_example(fmt, c, level, None, "", domain)[0] for c, level in sets]
        else:
            prompts = [prompt_model_prompt(fmt, c, level, domain) for c, level in sets]
        with ctx.engines.open(model) as engine:
            shards = generate_shards(engine, prompts, ctx.cfg.synth.sampling, out / "generated",
                                     lambda start, groups: [{"set": i, "sample": j, "text": c.text}
                                                            for i, group in enumerate(groups, start=start)
                                                            for j, c in enumerate(group)],
                                     ctx.cfg.engine.shard_prompts, desc=f"synth/{out.name}")
        write_jsonl(path, iter_rows(shards))
    return [row for _, row in iter_json_rows(path)]


def _drop(items: list, reasons: list[str | None], dropped: Counter) -> list:
    """The items whose reason is None; the others are counted by reason."""
    dropped.update(r for r in reasons if r)
    return [item for item, reason in zip(items, reasons) if reason is None]


def _filter(ctx: StageContext, generated: list[dict], sets, seed_problems: list[str],
            index: NgramIndex, generator: str = "em") -> tuple[list[Problem], Counter, Counter]:
    """Parsed, deduplicated, non-degenerate, decontaminated problems (targets not attached yet)."""
    cfg = ctx.cfg.synth
    funnel, dropped = Counter(generated=len(generated)), Counter[str]()
    if generator == "no_rationale":  # the problem block alone, up to its end marker
        parsed = [("", row["text"].split(PROBLEM_END)[0].strip()) if PROBLEM_END in row["text"] else None
                  for row in generated]
        parsed = [zx if zx and zx[1] else None for zx in parsed]
    else:
        parsed = [parse_marked(row["text"]) for row in generated]
    items = _drop([(row, *zx) if zx else None for row, zx in zip(generated, parsed)],
                  [None if zx else "unparsed" for zx in parsed], dropped)
    funnel["parsed"] = len(items)
    # exact duplicates of each other or of a seed training problem (a memorised seed problem is not new)
    duplicate_of = exact_duplicates(seed_problems + [x for _, _, x in items])[len(seed_problems):]
    items = _drop(items, [None if d is None else "seed_copy" if d < len(seed_problems) else "duplicate"
                          for d in duplicate_of], dropped)
    funnel["unique"] = len(items)
    near = near_duplicates([x for _, _, x in items], cfg.near_duplicate_threshold, cfg.num_perm, ctx.cfg.seed)
    items = _drop(items, [None if d is None else "near_duplicate" for d in near], dropped)
    funnel["near_unique"] = len(items)
    items = _drop(items, [degenerate_reason(x, min_words=cfg.min_words) for _, _, x in items], dropped)
    funnel["not_degenerate"] = len(items)
    items = _drop(items, ["contaminated" if index.contaminated(x) else None for _, _, x in items], dropped)
    funnel["decontaminated"] = len(items)
    problems = []
    for row, z, x in items:
        concepts, level = sets[row["set"]]
        problems.append(Problem(id=item_id(f"synth-{ctx.cfg.domain.name}", x), domain=verified_as(ctx.cfg.domain.name),
                                problem=x, concepts=concepts, level=level, rationale=z or None, source="synth",
                                meta={"concept_set": row["set"], "sample": row["sample"], "seed": ctx.cfg.seed}))
    return problems, funnel, dropped


def _attach_targets(ctx: StageContext, problems: list[Problem], dropped: Counter, out: Path) -> list[Problem]:
    cfg = ctx.cfg.synth
    if not problems:
        return []
    if ctx.cfg.domain.name != "code" and cfg.references == "oracle":
        solved = [solve(p.problem) for p in problems]
        dropped["oracle_unsolved"] += sum(r is None for r in solved)
        oracle: list[tuple[str, float] | None] = [None if r is None else (r[1], 1.0) for r in solved]
        return _with_references(problems, oracle, dropped, cfg.min_words)
    # math references come from the solver's votes; code tests from the test writer (by default the solver too)
    model = cfg.test_writer if ctx.cfg.domain.name == "code" and cfg.test_writer else solver_model(ctx)
    with ctx.engines.open(model) as served:
        engine = ShardedEngine(served, out / "targets", ctx.cfg.engine.shard_prompts, desc=f"synth/{out.name} targets")
        if ctx.cfg.domain.name == "code":
            sampling = SamplingConfig(n=cfg.test_calls, temperature=cfg.reference_temperature,
                                      max_new_tokens=cfg.reference_max_new_tokens, seed=ctx.cfg.seed)
            tests, reasons = written_tests(engine, ctx.prompt_format("test_writer", model),
                                           [p.problem for p in problems], sampling)
            dropped.update(reasons)
            kept = []
            for problem, problem_tests in zip(problems, tests):
                if problem_tests:
                    problem.tests = problem_tests
                    kept.append(problem)
            return kept
        sampling = SamplingConfig(n=cfg.reference_votes, temperature=cfg.reference_temperature,
                                  max_new_tokens=cfg.reference_max_new_tokens, seed=ctx.cfg.seed)
        references, reasons = majority_references(engine, ctx.prompt_format("solver", model),
                                                  [p.problem for p in problems], sampling, cfg.min_confidence)
    dropped.update(reasons)
    return _with_references(problems, references, dropped, cfg.min_words)


def _with_references(problems: list[Problem], references: list[tuple[str, float] | None], dropped: Counter,
                     min_words: int) -> list[Problem]:
    kept = []
    for problem, reference in zip(problems, references):
        if reference is None:
            continue
        problem.answer, problem.meta["reference_confidence"] = reference
        reason = degenerate_reason(problem.problem, problem.answer, min_words=min_words)
        if reason:
            dropped[reason] += 1
            continue
        kept.append(problem)
    return kept


def synthesize(ctx: StageContext, name: str, sets, seed_problems: list[str], index: NgramIndex) -> dict[str, float]:
    out = ctx.stage_dir / name
    if (out / "funnel.json").is_file():
        log.info("synth/%s: already done, skipping", name)
        return json.loads((out / "funnel.json").read_text())["counts"]
    model = generator_model(ctx, name)
    generated = _generate(ctx, model, sets, out)
    problems, funnel, dropped = _filter(ctx, generated, sets, seed_problems, index, name)
    kept = _attach_targets(ctx, problems, dropped, out)
    iteration = int(model.parent.name.removeprefix("iter_")) if model.parent.name.startswith("iter_") else 0
    for problem in kept:  # provenance: which p_θ wrote it, and which filters it passed
        problem.meta.update(generator=name, em_iteration=iteration, filters=list(FUNNEL[1:-1]) + ["target"])
    funnel["kept"] = len(kept)
    write_jsonl(out / "problems.jsonl", kept)
    if ctx.cfg.synth.released_format:
        fmt = ctx.prompt_format("prompt_model", model)
        write_jsonl(out / "problems_released.jsonl", [to_problem_generation_row(fmt, Triple(
            id=p.id, domain=p.domain, concepts=p.concepts, level=p.level or "", rationale=p.rationale or "",
            problem=p.problem, answer=p.answer)) for p in kept])
    counts: dict[str, float] = {k: funnel[k] for k in FUNNEL}
    write_json(out / "funnel.json", {"counts": counts, "dropped": dict(sorted(dropped.items()))})
    log.info("synth/%s funnel: %s", name, " → ".join(f"{k} {counts[k]}" for k in FUNNEL))
    log.info("synth/%s dropped: %s", name, ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "none")
    return counts


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.synth
    train = read_jsonl(ctx.triples_dir() / "train.jsonl", Triple)
    sets = concept_sets(ctx, train)
    index = NgramIndex(eval_problems(ctx), cfg.decontamination_ngram)
    metrics: dict[str, float] = {}
    for name in cfg.generators:
        counts = synthesize(ctx, name, sets, [t.problem for t in train], index)
        metrics.update({f"synth/{name}/{k}": float(v) for k, v in counts.items()})
        ctx.tracker.log_artifact(ctx.run_id, ctx.stage_dir / name / "funnel.json")
    on_rank_zero(shutil.copyfile, ctx.stage_dir / cfg.generators[0] / "problems.jsonl", ctx.stage_dir / "problems.jsonl")
    return metrics
