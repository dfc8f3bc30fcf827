"""One self-play round's DPO fit (`selfplay.optimizer: dpo`): the round's pairs tokenised, the reference's
log-probs (the round's starting policy, one batched no-grad pass, cached under the round; or a frozen copy), the
fit from that policy, its export and lineage, and the round-end summary over every pair it trained on. Each step
is a function of its own; `fit_dpo` runs them in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from promptcot_pl.data.records import Pair
from promptcot_pl.losses.dpo import pair_summary
from promptcot_pl.models import load_tokenizer
from promptcot_pl.runner.context import StageContext, log
from promptcot_pl.runner.fit import continued_state, export_trained
from promptcot_pl.stages.selfplay import scores
from promptcot_pl.stages.selfplay.data import PreferenceDataModule, encode_preferences
from promptcot_pl.stages.selfplay.module import DPOModule
from promptcot_pl.trainer import build_trainer, load_for_fit


def fit_dpo(ctx: StageContext, policy: Path, pairs: list[Pair], out: Path, round_: int) -> dict[str, float]:
    """DPO from `policy` (also the reference); the model goes to `out/model`. Returns the fit's epoch means and a
    round-end pass over every pair it trained on (`selfplay/end/…`)."""
    triplets = [(p.prompt, p.chosen, p.rejected) for p in pairs]
    tokenizer, rows, kept = _encode(ctx, policy, triplets, round_)
    flat = scores.scored_completions(rows, [triplets[i][0] for i in kept])
    ref = _reference(ctx, policy, flat, len(triplets), kept, out)
    trainer, fit_run = _train(ctx, policy, tokenizer, rows, ref, out, round_)
    ctx.log_model(out / "model", fit_run, triplets, out / "pairs.jsonl")
    return {"train_pairs": float(len(rows)), "pairs_too_long": float(len(triplets) - len(kept)),
            "steps": float(trainer.global_step),
            **_summary(ctx, trainer, fit_run, flat, rows, ref[kept], out, round_)}


def _encode(ctx: StageContext, policy: Path, triplets: list[tuple[str, str, str]],
            round_: int) -> tuple[Any, list, list[int]]:
    """(the policy's tokenizer, the encoded pairs that fit `data.max_length`, their indices in `triplets`)."""
    sp, max_length = ctx.cfg.selfplay, ctx.cfg.data.max_length
    tokenizer = load_tokenizer(policy)
    rows, kept = encode_preferences(tokenizer, triplets, max_length, step_level=sp.dpo.granularity == "step")
    if len(kept) < len(triplets):
        log.info("selfplay round %d: %d of %d pairs longer than data.max_length=%d left out", round_,
                 len(triplets) - len(kept), len(triplets), max_length)
    return tokenizer, rows, kept


def _reference(ctx: StageContext, policy: Path, flat: list, n_pairs: int, kept: list[int], out: Path) -> torch.Tensor:
    """The reference's (chosen, rejected) log-probs, [n_pairs, 2], indexed by the pairs' positions (rows of pairs
    left out stay 0); computed once per round and cached under `out` (`scores.reference`)."""
    ref = scores.reference(policy, flat, ctx.cfg.trainer, ctx.cfg.data.max_length, out)
    full = torch.zeros(n_pairs, 2, dtype=ref.dtype)
    full[kept] = ref
    return full


def _train(ctx: StageContext, policy: Path, tokenizer: Any, rows: list, ref: torch.Tensor, out: Path,
           round_: int) -> tuple[L.Trainer, str | None]:
    """The DPO fit from `policy`, exported to `out/model`; (the trainer, the fit's MLflow run)."""
    sp, trainer_cfg = ctx.cfg.selfplay, ctx.cfg.trainer
    frozen = sp.dpo.reference == "frozen"
    L.seed_everything(ctx.cfg.seed + round_, verbose=False)
    # fp32 masters under *-mixed, whatever the inference dtype; empty on FSDP ranks other than 0
    module = DPOModule(load_for_fit(policy, trainer_cfg), sp.optim, sp.dpo,
                       ref_model=load_for_fit(policy, trainer_cfg) if frozen else None,
                       chunk_mib=trainer_cfg.logits_chunk_mib, optimizer_state=continued_state(policy, sp.optim))
    data = PreferenceDataModule(rows, tokenizer.pad_token_id, sp.batch_size, ref=None if frozen else ref,
                                num_workers=ctx.cfg.data.num_workers, seed=ctx.cfg.seed + round_,
                                share_prefix=trainer_cfg.share_prefix)
    fit_run = ctx.tracker.run_id(f"selfplay/round_{round_:03d}", f"selfplay.round_{round_}", parent=ctx.run_id)
    trainer = build_trainer(trainer_cfg, max_epochs=sp.epochs, default_root_dir=out,
                            logger=ctx.tracker.lightning_logger(fit_run))
    trainer.fit(module, datamodule=data)
    # a round continued from its predecessor's AdamW state keeps its own for the next round
    export_trained(trainer, tokenizer, out / "model", ctx.cfg.model.dtype,
                   optimizer=sp.optim.keep_state or sp.optim.continue_state)
    return trainer, fit_run


def _summary(ctx: StageContext, trainer: L.Trainer, fit_run: str | None, flat: list, rows: list,
             ref: torch.Tensor, out: Path, round_: int) -> dict[str, float]:
    """The last epoch's means (`…/epoch/…`, not the last micro-batch's values) and the fitted policy's change on
    every pair it trained on (`selfplay/end/…`), logged on the fit's run and in one console line."""
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("selfplay/", "train/"))}
    final = {k: v for k, v in logged.items() if "/epoch/" in k}
    after = scores.logprobs(out / "model", flat, ctx.cfg.trainer, ctx.cfg.data.max_length, out)
    tokens = torch.tensor([[len(t) for t in row.targets] for row in rows], dtype=ref.dtype)
    end = {f"selfplay/end/{k}": v for k, v in pair_summary(ref, after, tokens, ctx.cfg.selfplay.dpo.beta).items()}
    ctx.tracker.log_metrics(fit_run, logged | end, step=trainer.global_step)  # a fit shorter than log_every_n_steps too
    log.info("selfplay round %d: after %d steps, over its %d pairs: log π(chosen) %+.2f, log π(rejected) %+.2f "
             "(nats, mean change), reward accuracy %.2f", round_, trainer.global_step, len(rows),
             end["selfplay/end/logps_chosen_change"], end["selfplay/end/logps_rejected_change"],
             end["selfplay/end/rewards_accuracy"])
    return {**final, **end}
