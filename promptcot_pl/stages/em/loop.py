"""Stage `em` (SPEC §3): the rationale/prompt EM loop after `coldstart`.

Each iteration t (seeded with seed + t, so a resumed run equals an uninterrupted one):
  E-step  sample K rationales z_k ~ q_φ(·|c,x) (engine) → score R = log p_θ(z_k,x|c) and log q_φ(z_k|c,x)
          (batched `Trainer.predict`) → selection weights → fit q_φ by weighted NLL (WeightedNLLModule)
  M-step  z̃ from the updated q_φ (greedy | sample | the E-step's best) → fit p_θ on c → (z̃, x) (the same, w = 1)
  eval    held-out `em/iwae_heldout` and `em/elbo_heldout` from `em.eval_k` samples at temperature 1, top-p 1 —
          whatever the training K and temperature, so runs that differ in them compare like with like —
          and `em/nll_x_given_z_heldout` (x under p_θ given greedy z from q_φ, per token), logged with step = t;
          iteration 0 is the cold start.
Candidates are the engine's samples as generated: log q_φ is scored on the sampled token ids (through the EOS the
engine sampled), never on re-tokenised text. A candidate cut at `em.max_rationale_tokens`, holding one
of the markers (it would nest in p_θ's target, m16) or with surrounding whitespace (p_θ's target strips it) has no
comparable density: it weighs 0 in the E-step and in the bound, and is counted (`em/truncated_share`,
`em/marker_share`, `em/malformed_share`; `em/heldout_*` for the evaluation samples).
Outputs: `iter_NNN/{rationale_model,prompt_model}` (HF checkpoints), `iter_NNN/metrics.json` + `DONE`,
`history.jsonl`, `em_curves.png`, and `baseline/` (p_θ fitted on c → x only) when asked for.

`em.compare_frozen` also runs the `e_step=false` ablation from the same cold start under `frozen/` (same layout;
MLflow keys `em_frozen/…`), so one run holds every variant of the paper's EM analysis and one plot shows them all.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import lightning as L

from promptcot_pl.config import OptimConfig
from promptcot_pl.data.collate import encode_pair, pad_batch, target_count
from promptcot_pl.data.encode import encode
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.jsonl import read_jsonl, write_jsonl
from promptcot_pl.data.prompts import problem_given_rationale_example
from promptcot_pl.data.records import Triple
from promptcot_pl.data.sharding import sharded_loader
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.losses import elbo_estimate, em_weights, iwae_bound
from promptcot_pl.models import load_tokenizer
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.runner.context import StageContext, log, write_json
from promptcot_pl.runner.fit import drop_masters, export_trained
from promptcot_pl.runner.model_paths import base_models
from promptcot_pl.runner.steps import ResumableSteps
from promptcot_pl.stages.em.candidates import (
    Formats,
    first_texts,
    flaw_shares,
    p_pair,
    q_pair,
    sample,
    score,
    score_candidates,
    token_budget,
    where,
)
from promptcot_pl.stages.em.config import EMConfig
from promptcot_pl.trainer import build_trainer, load_for_fit


def _fit(ctx: StageContext, loss_name: str, base: Path, items: Sequence[tuple[str, str | list[int], float]],
         optim: OptimConfig, epochs: int, out: Path) -> Path:
    """Fit `base` on weighted (prompt, target, weight) items and save it to `out` (HF format); a target is text, or
    token ids as sampled (the E-step fits q_φ on its own samples' ids)."""
    tokenizer = load_tokenizer(base)
    encoded = []
    for prompt, target, weight in items:
        item = encode_pair(tokenizer, prompt, target, token_budget(ctx))
        if item is not None:
            item.weight = weight
            encoded.append(item)
    if len(encoded) < len(items):  # dropped, never cut (a sampled rationale may re-tokenize longer)
        log.warning("em: %d of %d fitting items longer than %d tokens left out", len(items) - len(encoded),
                    len(items), token_budget(ctx))
    loader = sharded_loader(encoded, ctx.cfg.em.batch_size, shuffle=True, seed=ctx.cfg.seed,
                            collate=partial(pad_batch, pad_id=tokenizer.pad_token_id),
                            counts=[target_count(e) for e in encoded], window=ctx.cfg.trainer.accumulate_grad_batches)
    with ctx.engines.released(f"the fit of {where(ctx, out)}"):
        module = WeightedNLLModule(load_for_fit(base, ctx.cfg.trainer), optim, ctx.cfg.trainer.logits_chunk_mib, loss_name)
        trainer = build_trainer(ctx.cfg.trainer, max_epochs=epochs, default_root_dir=ctx.stage_dir)
        trainer.fit(module, loader)
        path = export_trained(trainer, tokenizer, out, ctx.cfg.model.dtype)
    ctx.log_model(path, None, items, out.parent)
    return path


def evaluate(ctx: StageContext, engine, f: Formats, q: Path, p: Path, heldout: list[Triple],
             out: Path) -> dict[str, float]:
    """Held-out bound and conditional NLL of x; the same seed every iteration, so iterations compare. Samples are
    streamed under `out` (`heldout_candidates/`, `heldout_greedy/`).

    The bound's samples are `em.eval_k` draws at temperature 1, top-p 1 — the q_φ whose log q is scored — never
    the training K or temperature. A pair none of whose samples is valid has no finite bound: it is left out of the
    means and counted (`em/heldout_unbounded_pairs`)."""
    em = ctx.cfg.em
    engine.serve(q)
    zs = sample(engine, f, heldout, em.eval_k, 1.0, ctx, ctx.cfg.seed, out / "heldout_candidates", q)
    greedy = first_texts(sample(engine, f, heldout, 1, 0.0, ctx, ctx.cfg.seed, out / "heldout_greedy", q),
                         valid_only=False)
    x_pairs = [problem_given_rationale_example(f.p, t.concepts, t.level, (z or "").strip(), t.problem, t.domain)
               for t, z in zip(heldout, greedy)]
    scores, lx, x_tokens = score_candidates(ctx, f, q, p, heldout, zs, extra_p=x_pairs)
    iwae, elbo = iwae_bound(scores.lp, scores.lq, scores.valid), elbo_estimate(scores.lp, scores.lq, scores.valid)
    bounded = scores.valid.any(dim=1)
    if not bounded.any():
        raise ValueError(f"em: no valid rationale among {em.eval_k} samples of any held-out pair (all truncated at "
                         f"em.max_rationale_tokens={em.max_rationale_tokens} or malformed); raise the limit")
    if not bounded.all():
        log.warning("em: %d of %d held-out pairs have no valid rationale among %d samples: left out of the bound",
                    int((~bounded).sum()), len(heldout), em.eval_k)
    return {"em/iwae_heldout": float(iwae[bounded].mean()), "em/elbo_heldout": float(elbo[bounded].mean()),
            "em/nll_x_given_z_heldout": float(-lx.sum() / x_tokens.sum()),
            "em/heldout_unbounded_pairs": float((~bounded).sum()), **flaw_shares(zs.flaws, "em/heldout_")}


def _iteration(ctx: StageContext, em: EMConfig, root: Path, engine, f: Formats, it: int, q: Path, p: Path,
               train: list[Triple], frozen: dict[str, str]) -> tuple[Path, Path, dict[str, float]]:
    out = root / f"iter_{it:03d}"
    L.seed_everything(ctx.cfg.seed + it, verbose=False)
    pairs = train if em.pairs_per_iteration is None else random.Random(ctx.cfg.seed + it).sample(
        train, min(em.pairs_per_iteration, len(train)))
    stats: dict[str, float] = {}
    winners: list[str | None] = []
    if em.e_step:
        engine.serve(q)
        zs = sample(engine, f, pairs, em.k, em.rationale_temperature, ctx, ctx.cfg.seed + it, out / "candidates", q)
        sc = score_candidates(ctx, f, q, p, pairs, zs)
        norm = dict(p_tokens=sc.p_tokens, q_tokens=sc.q_tokens) if em.length_normalize else {}
        weights = em_weights(sc.lp, sc.lq, selection=em.selection, tau=em.tau, beta=em.beta, valid=sc.valid, **norm)
        has_valid = sc.valid.any(dim=1)
        best = weights.argmax(dim=1)
        e_items, winners = [], [None] * len(pairs)
        for i, j, z in zs:  # a shard at a time: only the selected candidates' ids are kept
            if weights[i, j] > 1e-6:
                e_items.append((q_pair(f, pairs[i], "")[0], z.ids, float(weights[i, j])))
            if j == best[i] and has_valid[i]:
                winners[i] = z.text
        if not e_items:
            raise ValueError(f"em iteration {it}: no valid rationale among {em.k} samples of any pair "
                             f"({flaw_shares(zs.flaws, '')}); raise em.max_rationale_tokens")
        q = _fit(ctx, "em/e_loss", q, e_items, em.e_optim, em.epochs_e, out / "rationale_model")
        entropy = -(weights.clamp(min=1e-12).log() * weights).sum(dim=1)[has_valid].mean()
        stats = {"em/reward_mean": float(sc.lp[sc.valid].mean()),
                 "em/reward_best_mean": float(sc.lp.max(dim=1).values[has_valid].mean()),
                 "em/weight_entropy": float(entropy) + 0.0,  # + 0.0: one-hot weights give -0.0
                 "em/pairs_without_valid_candidate": float((~has_valid).sum()), **flaw_shares(zs.flaws, "em/")}
    match em.z_mode if em.e_step else "frozen":
        case "frozen":
            z_tilde = [frozen.get(t.id) for t in pairs]
        case "best":
            z_tilde = winners
        case mode:
            engine.serve(q)
            temperature = 0.0 if mode == "greedy" else em.z_temperature
            z_tilde = first_texts(sample(engine, f, pairs, 1, temperature, ctx, ctx.cfg.seed + it, out / "z_tilde", q))
    # an invalid z̃ (cut off, nested markers) would teach p_θ to write one: that pair sits this M-step out
    items = [(*p_pair(f, t, z), 1.0) for t, z in zip(pairs, z_tilde) if z is not None]
    stats["em/m_step_pairs_dropped"] = float(len(pairs) - len(items))
    if items:
        p = _fit(ctx, "em/m_loss", p, items, em.m_optim, em.epochs_m, out / "prompt_model")
    else:  # no checkpoint for this iteration: a resume and synthesis take the latest one (`_latest`)
        log.warning("%s iteration %d: none of %d pairs has a valid z̃ (cut off or holding a marker): p_θ is carried "
                    "over unchanged; raise em.max_rationale_tokens", "em" if em.e_step else "em (frozen rationales)",
                    it, len(pairs))
    return q, p, stats


def _frozen_rationales(ctx: StageContext, engine, f: Formats, q: Path, train: list[Triple]) -> dict[str, str]:
    """e_step=false: z̃ decoded once (greedy) from the cold-start q_φ and reused by every M-step (invalid ones —
    cut off, holding markers — are recorded with their flaw and left out)."""
    path = ctx.stage_dir / "frozen_rationales.jsonl"
    if not path.is_file():
        engine.serve(q)
        zs = sample(engine, f, train, 1, 0.0, ctx, ctx.cfg.seed, ctx.stage_dir / "frozen_greedy", q)
        write_jsonl(path, ({"id": train[i].id, "rationale": z.text, "flaw": z.flaw} for i, _, z in zs))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["id"]: row["rationale"] for row in rows if row.get("flaw") is None}


def _baseline(ctx: StageContext, f: Formats, train: list[Triple], heldout: list[Triple]) -> dict[str, float]:
    """p_θ on c → x only, fitted from the same base with the same settings as the cold-start p_θ (coldstart.epochs,
    coldstart.optim): its held-out NLL of x, on the same target text as the EM metric. Compare it with
    `em/nll_x_given_z_heldout` at iteration 0 (equal budgets) and after EM (which adds M-step updates)."""
    out = ctx.stage_dir / "baseline"
    if not (out / "metrics.json").is_file():
        base, _ = base_models(ctx, train)
        items = [(*problem_given_rationale_example(f.p, t.concepts, t.level, None, t.problem, t.domain), 1.0)
                 for t in train]
        L.seed_everything(ctx.cfg.seed, verbose=False)
        model = _fit(ctx, "em/m_loss", Path(base), items, ctx.cfg.coldstart.optim, ctx.cfg.coldstart.epochs,
                     out / "prompt_model")
        lx, tokens = score(ctx, model, [problem_given_rationale_example(f.p, t.concepts, t.level, None, t.problem,
                                                                         t.domain) for t in heldout])
        write_json(out / "metrics.json", {"em/nll_x_no_rationale_heldout": float(-lx.sum() / tokens.sum())})
    return json.loads((out / "metrics.json").read_text())


def _fitting(triples: list[Triple], f: Formats, max_length: int, split: str) -> list[Triple]:
    """The pairs whose conditionals fit in `max_length` tokens without their rationale (which gets its own
    `em.max_rationale_tokens`); longer ones are left out and counted, since a cut sequence cannot be scored."""
    def length(fmt: PromptFormat, prompt: str, target: str) -> int:
        return len(encode(fmt.tokenizer, prompt, target)[0])

    kept = [t for t in triples if max(length(f.p, *p_pair(f, t, "")), length(f.q, *q_pair(f, t, ""))) <= max_length]
    if len(kept) < len(triples):
        log.warning("em: %d of %d %s pairs are longer than data.max_length=%d tokens without a rationale; left out",
                    len(triples) - len(kept), len(triples), split, max_length)
    if not kept:
        raise ValueError(f"em: no {split} pair fits in data.max_length={max_length} tokens; raise data.max_length")
    return kept


def _run_variant(ctx: StageContext, engine, f: Formats, em: EMConfig, root: Path, train: list[Triple],
                 heldout: list[Triple],
                 metric_prefix: str = "em/", coldstart_metrics: dict[str, float] | None = None) -> list[dict[str, float]]:
    """Iterations 0..em.iterations of one variant under `root`, resuming after the last finished one; iteration 0
    (the cold start's evaluation) is taken from `coldstart_metrics` when another variant already measured it."""
    cold = ctx.stage_output("coldstart")
    q, p = cold / "rationale_model" / "model", cold / "prompt_model" / "model"
    steps = ResumableSteps(ctx, root, "iteration", "iter", em.iterations, rename=lambda k: k.replace("em/", metric_prefix, 1))
    frozen = {} if em.e_step else _frozen_rationales(ctx, engine, f, q, train)
    name = "em" if em.e_step else "em (frozen rationales)"
    for step in steps:
        it = step.index
        if step.done:  # resume: this iteration finished before
            if it > 0:
                q, p = _latest(root, it, "rationale_model", cold), _latest(root, it, "prompt_model", cold)
            continue
        metrics: dict[str, float] = {}
        if it > 0:
            q, p, metrics = _iteration(ctx, em, root, engine, f, it, q, p, train, frozen)
            metrics.update(evaluate(ctx, engine, f, q, p, heldout, step.dir))
        else:
            metrics = dict(coldstart_metrics) if coldstart_metrics else evaluate(ctx, engine, f, q, p, heldout,
                                                                                 step.dir)
        steps.finish(step, metrics)
        # the next iteration continues from q and p only (the frozen variant under root/frozen/ has its own chain)
        on_rank_zero(drop_masters, [q, p], sorted(root.glob("iter_*/*_model")))
        # a sweep's pruner sees the main variant's iterations 1..N (iteration 0, the cold start, is the same for
        # every trial of an EM sweep, and Optuna's pruners judge a trial by its best value so far)
        if ctx.report is not None and metric_prefix == "em/" and it > 0:
            ctx.report(it, metrics)
        log.info("%s iteration %d: iwae %.2f  elbo %.2f  nll(x|z) %.4f%s", name, it, metrics["em/iwae_heldout"],
                 metrics["em/elbo_heldout"], metrics["em/nll_x_given_z_heldout"], ctx.engines.summary())
    return steps.history


def run(ctx: StageContext) -> dict[str, float]:
    cfg, em = ctx.cfg, ctx.cfg.em
    seed_dir, cold = ctx.triples_dir(), ctx.stage_output("coldstart")
    q = cold / "rationale_model" / "model"
    f = Formats(ctx.prompt_format("prompt_model", cold / "prompt_model" / "model"), ctx.prompt_format("rationale_model", q))
    all_train = read_jsonl(seed_dir / "train.jsonl", Triple)
    train = _fitting(all_train, f, cfg.data.max_length, "training")
    heldout = _fitting(read_jsonl(seed_dir / "heldout.jsonl", Triple), f, cfg.data.max_length,
                       "held-out")[: em.heldout_limit]
    with ctx.engines.open(q, served=True) as engine:  # closed on errors and pruned trials too
        main = _run_variant(ctx, engine, f, em, ctx.stage_dir, train, heldout)
        variants = {"EM" if em.e_step else "EM without E-step": main}
        final = {k: v for k, v in variants[next(iter(variants))][-1].items() if k != "iteration"}
        if em.compare_frozen and em.e_step:
            first = {k: v for k, v in variants["EM"][0].items() if k != "iteration"}
            frozen = _run_variant(ctx, engine, f, replace(em, e_step=False), ctx.stage_dir / "frozen", train, heldout,
                                  metric_prefix="em_frozen/", coldstart_metrics=first)
            variants["EM without E-step"] = frozen
            final.update({k.replace("em/", "em_frozen/", 1): v for k, v in frozen[-1].items() if k != "iteration"})
    history = variants[next(iter(variants))]
    if em.no_rationale_baseline:
        final.update(_baseline(ctx, f, train, heldout))
    final["em/pairs_too_long"] = float(len(all_train) - len(train))  # left out, never cut (data.max_length)
    final["em/iwae_heldout_coldstart"] = history[0]["em/iwae_heldout"]
    final["em/nll_x_given_z_heldout_coldstart"] = history[0]["em/nll_x_given_z_heldout"]
    from promptcot_pl.stages.em.plot import plot_history

    png = on_rank_zero(plot_history, variants, ctx.stage_dir / "em_curves.png",
                       baseline=final.get("em/nll_x_no_rationale_heldout"))
    ctx.tracker.log_artifact(ctx.run_id, png)  # a no-op on other ranks: only rank 0 tracks
    return final


def _latest(root: Path, it: int, name: str, cold: Path) -> Path:
    """The newest checkpoint of `name` at or before iteration `it` (q_φ is not refitted without an E-step, p_θ
    not in an M-step without a valid z̃)."""
    for previous in range(it, 0, -1):
        candidate = root / f"iter_{previous:03d}" / name
        if candidate.is_dir():
            return candidate
    return cold / name / "model"
