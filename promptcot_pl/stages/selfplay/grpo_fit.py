"""One online GRPO round (`selfplay.optimizer: grpo`): the policy practises the round's problems with rollouts it
samples itself, through the stage's engine, and its fitted weights go to `out/model`.

The fit is resumable at step level: a checkpoint every `trainer.checkpoint_every_n_steps` steps
(`checkpoints/last.ckpt`, metrics handed to the tracker first) and every generation batch on disk before its first
step (`generations/`), so a rerun after kill -9 replays the same rollouts from the same weights and logs the same
curves (tests/test_grpo.py). `rollouts.jsonl` lists the rollouts of the groups it trained on when it ends.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import torch

from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.jsonl import write_jsonl
from promptcot_pl.data.records import Problem, Rollout
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.generation import ServedEngine
from promptcot_pl.models import load_tokenizer
from promptcot_pl.runner.context import StageContext, log
from promptcot_pl.runner.fit import continued_state, export_hf, export_trained, intact_checkpoint
from promptcot_pl.stages.selfplay.grpo_module import GRPOModule
from promptcot_pl.stages.selfplay.online import GenerationBatches, OnlineRollouts
from promptcot_pl.trainer import MetricsFirstCheckpoint, build_trainer, load_for_fit
from promptcot_pl.verify.rewards import Rewards


def fit_online(ctx: StageContext, engine: ServedEngine, fmt: PromptFormat, policy: Path, problems: list[Problem],
               out: Path, round_: int, rewards: Rewards) -> dict[str, float]:
    sp, trainer_cfg = ctx.cfg.selfplay, ctx.cfg.trainer
    grpo = sp.grpo
    tokenizer = load_tokenizer(policy)
    L.seed_everything(ctx.cfg.seed + round_, verbose=False)
    module = GRPOModule(load_for_fit(policy, trainer_cfg), sp.optim, grpo,
                        ref_model=load_for_fit(policy, trainer_cfg) if grpo.beta else None,
                        chunk_mib=trainer_cfg.logits_chunk_mib, optimizer_state=continued_state(policy, sp.optim))
    data = GenerationBatches(len(problems), grpo.problems_per_step, grpo.iterations, sp.epochs,
                             seed=ctx.cfg.seed + round_)

    def export(weights: dict[str, torch.Tensor], where: Path) -> Path:  # engines that load checkpoints only
        shutil.rmtree(where, ignore_errors=True)
        return export_hf(module.model, tokenizer, where, weights, ctx.cfg.model.dtype, masters=False)

    online = OnlineRollouts(engine, fmt, problems, rewards, tokenizer, sp.rollouts, grpo, out,
                            seed=ctx.cfg.seed + round_, max_length=ctx.cfg.data.max_length,
                            share_prefix=trainer_cfg.share_prefix, export=export)
    checkpoint = MetricsFirstCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0,
                                        every_n_train_steps=trainer_cfg.checkpoint_every_n_steps)
    fit_run = ctx.tracker.run_id(f"selfplay/round_{round_:03d}", f"selfplay.round_{round_}", parent=ctx.run_id)
    trainer = build_trainer(trainer_cfg, max_epochs=1, default_root_dir=out,
                            logger=ctx.tracker.lightning_logger(fit_run), callbacks=[online, checkpoint])
    last = out / "checkpoints" / "last.ckpt"
    if last.exists() and not intact_checkpoint(last):
        log.warning("selfplay round %d: %s is incomplete (cut while being written): the round's fit starts over",
                    round_, last)
        shutil.rmtree(last) if last.is_dir() else last.unlink()
    resume = str(last) if last.exists() else None
    if resume:
        log.info("selfplay round %d: resuming the GRPO fit from %s", round_, last)
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    export_trained(trainer, tokenizer, out / "model", ctx.cfg.model.dtype,
                   optimizer=sp.optim.keep_state or sp.optim.continue_state)
    ctx.log_model(out / "model", fit_run, [(p.id, p.problem) for p in problems], out / "rollouts.jsonl")
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("selfplay/grpo/", "train/"))}
    ctx.tracker.log_metrics(fit_run, logged, step=trainer.global_step)  # a fit shorter than log_every_n_steps too
    final = summary(out)
    on_rank_zero(_finish, out, problems)
    log.info("selfplay round %d: GRPO, %d steps on %d generation batches: reward %.3f, pass rate %.3f, "
             "zero-variance groups %.0f%%, %.1f groups trained per batch", round_, trainer.global_step,
             len(list((out / "generations").glob("gen_*.pt"))), final["selfplay/grpo/round/reward_mean"],
             final["selfplay/grpo/round/pass_rate"], 100 * final["selfplay/grpo/round/zero_variance_share"],
             final["selfplay/grpo/round/groups_trained"])
    return {"steps": float(trainer.global_step), **final}


def summary(out: Path) -> dict[str, float]:
    """The round's means over its generation batches (`selfplay/grpo/round/…`), read from `out/generations`: the same after
    a resume, whichever process generated each batch."""
    stats = [torch.load(path, weights_only=False)["stats"] for path in sorted((out / "generations").glob("gen_*.pt"))]
    keys = sorted({k for s in stats for k in s})
    return {f"selfplay/grpo/round/{k}": sum(s[k] for s in stats if k in s) / sum(k in s for s in stats) for k in keys}


def _finish(out: Path, problems: list[Problem]) -> None:
    """Every rollout of the groups the round trained on in `rollouts.jsonl`; the checkpoints go (the generation
    batches stay: the round's record, and a rerun before DONE replays them)."""
    rows = []
    for path in sorted((out / "generations").glob("gen_*.pt")):
        for group in torch.load(path, weights_only=False)["groups"]:
            problem = problems[group.problem]
            rows += [Rollout(problem_id=problem.id, index=k, text=text, valid=not cut, reward=reward,
                             meta={"tokens": len(ids), "generation": int(path.stem.split("_")[1])})
                     for k, (text, reward, cut, ids) in enumerate(zip(group.texts, group.rewards, group.truncated,
                                                                      group.completions))]
    write_jsonl(out / "rollouts.jsonl", rows)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
