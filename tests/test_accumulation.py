"""Gradient accumulation is exact: one optimizer step over a batch of 8 examples of very different
lengths gives the same gradient as 4 accumulated micro-batches of 2 (A = 4), for the token-mean NLL of SFT and the
M-step, the weighted NLL of the E-step and the pair-mean DPO loss: each micro-batch's sum is divided by the count
of the whole window, not by its own. Formula: g = ∇ Σ_window NLL / Σ_window tokens."""

import lightning as L
import pytest
import torch

from promptcot_pl.config import OptimConfig, TrainerConfig
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.stages.selfplay.config import DPOConfig
from promptcot_pl.stages.selfplay.data import PreferenceDataModule, encode_preferences
from promptcot_pl.stages.selfplay.module import DPOModule
from promptcot_pl.trainer import build_trainer

# lengths from 1 to ~60 target tokens: micro-batch means of means would weight tokens very unequally
PAIRS = [(f"Problem:\nWhat is {a} + {a}?\nSolution:\n", "We add. " * (1 + 7 * (a % 4)) + f"{2 * a}.") for a in range(8)]


class Grads(L.Callback):
    """The gradient of the first optimizer step (before clipping and the update)."""

    def __init__(self) -> None:
        self.grads = None

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def _step_grads(module, data, accumulate: int, tmp_path) -> dict[str, torch.Tensor]:
    grads = Grads()
    cfg = TrainerConfig(accumulate_grad_batches=accumulate, gradient_clip_val=None, enable_progress_bar=False)
    trainer = build_trainer(cfg, max_epochs=None, max_steps=1, default_root_dir=tmp_path, callbacks=[grads])
    trainer.fit(module, datamodule=data)
    return grads.grads


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        scale = a[name].abs().max().clamp(min=1e-12)
        assert (a[name] - b[name]).abs().max() / scale < 1e-5, name


@pytest.mark.parametrize("weighted", [False, True], ids=["sft", "e_step"])
def test_one_batch_of_8_equals_4_accumulated_micro_batches_of_2(tiny_dir, tmp_path, weighted):
    tok = load_tokenizer(tiny_dir)
    optim = OptimConfig(lr=1e-3, scheduler="constant", warmup_ratio=0.0)

    def run(batch_size, accumulate):
        torch.manual_seed(0)
        data = PairDataModule(tok, PAIRS, PAIRS[:2], batch_size=batch_size, max_length=256, seed=3)
        if weighted:  # the E-step's softmax weights, here 1, 2, 3, …
            data.setup()
            for i, item in enumerate(data.train_items):
                item.weight = 1.0 + i
        return _step_grads(WeightedNLLModule(load_model(tiny_dir), optim), data, accumulate, tmp_path / f"{batch_size}")

    whole, accumulated = run(8, 1), run(2, 4)
    _assert_same(whole, accumulated)


def test_a_preference_window_counts_its_pairs_and_chosen_tokens(tiny_dir):
    """The RPO term's denominator is the window's chosen completion tokens: what the module scores as chosen."""
    tok = load_tokenizer(tiny_dir)
    rows, _ = encode_preferences(tok, [(p, t, "No idea " * (1 + i)) for i, (p, t) in enumerate(PAIRS[:5])], 256)
    (batch,) = list(PreferenceDataModule(rows, tok.pad_token_id, batch_size=5).train_dataloader())
    chosen_tokens = int((batch["score_owner"] % 2 == 0).sum())  # owner 2k: row k's chosen completion
    assert batch["window_count"].tolist() == [5.0, float(chosen_tokens)]


@pytest.mark.parametrize("dpo", [DPOConfig(), DPOConfig(rpo_weight=1.0)], ids=["dpo", "dpo+rpo"])
def test_dpo_pair_mean_is_exact_under_accumulation(tiny_dir, tmp_path, dpo):
    """The DPO term is a mean over the window's pairs, the RPO term (chosen NLL) one over its chosen tokens."""
    tok = load_tokenizer(tiny_dir)
    # 7 pairs: micro-batches of 2, 2, 2, 1 pairs, whose mean of means differs from the mean over 7
    triplets = [(p, t, "No idea " * (1 + i)) for i, (p, t) in enumerate(PAIRS[:7])]
    rows, kept = encode_preferences(tok, triplets, max_length=256)
    assert len(kept) == 7
    policy = load_model(tiny_dir)

    def run(batch_size, accumulate):
        module = DPOModule(load_model(tiny_dir), OptimConfig(lr=1e-3, scheduler="constant", warmup_ratio=0.0),
                           dpo, ref_model=policy)
        data = PreferenceDataModule(rows, tok.pad_token_id, batch_size, seed=3)
        return _step_grads(module, data, accumulate, tmp_path / f"dpo{batch_size}")

    _assert_same(run(7, 1), run(2, 4))
