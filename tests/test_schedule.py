"""The learning-rate schedule and the optimizer state a fit starts from (modules/optim.py).

A fit of a few steps must still warm up: with `int(ratio·steps)` a ratio of 0.03 gave 0 warmup steps below 34
steps, and a fresh AdamW's first full-lr update is lr·sign(g) on every weight. A fit may instead continue the
AdamW moments its base model was fitted with (`optim.keep_state` → `optimizer.pt` → `optim.continue_state`).
"""

import lightning as L
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from promptcot_pl.config import OptimConfig, TrainerConfig
from promptcot_pl.config.loading import ConfigError
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import rationale_model_example
from promptcot_pl.experiment import load_config
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.modules.optim import STATE_FILE, adamw_with_schedule, load_state, save_state
from promptcot_pl.runner.fit import export_trained
from promptcot_pl.trainer import build_trainer


def _lrs(optim: OptimConfig, steps: int) -> list[float]:
    model = torch.nn.Linear(2, 2)
    out = adamw_with_schedule(model, optim, steps)
    optimizer, scheduler = out["optimizer"], out["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("scheduler", ["cosine", "linear", "constant", "wsd"])
@pytest.mark.parametrize("ratio", [0.03, 0.1])
def test_every_fit_length_warms_up_for_at_least_one_step(scheduler, ratio):
    for steps in range(1, 60):
        optim = OptimConfig(lr=1e-3, warmup_ratio=ratio, scheduler=scheduler)
        assert optim.warmup(steps) >= 1
        lrs = _lrs(optim, steps)
        # the first update is at most half the lr, and it is an update (transformers' own warmup starts at 0, so
        # a one-step warmup was a wasted step followed by a full-lr one)
        assert 0 < lrs[0] <= 0.5e-3, (steps, lrs[:3])


def test_no_warmup_only_when_asked_for():
    assert OptimConfig(warmup_ratio=0.0).warmup(100) == 0
    assert _lrs(OptimConfig(lr=1e-3, warmup_ratio=0.0, scheduler="constant"), 3) == [1e-3] * 3


def test_absolute_warmup_steps_replace_the_ratio():
    optim = OptimConfig(lr=1e-3, warmup_ratio=0.03, warmup_steps=4, scheduler="constant")
    assert optim.warmup(10) == 4 and optim.warmup(2) == 2
    assert _lrs(optim, 6) == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3, 1e-3])


def test_wsd_warms_up_holds_then_decays_to_zero():
    lrs = _lrs(OptimConfig(lr=1e-3, warmup_ratio=0.1, scheduler="wsd", decay_ratio=0.3), 20)
    assert lrs[:2] == pytest.approx([1e-3 / 3, 2e-3 / 3])  # 2 warmup steps
    assert lrs[2:14] == pytest.approx([1e-3] * 12)  # stable
    assert all(a > b for a, b in zip(lrs[14:], lrs[15:])) and lrs[-1] < 1e-4  # 6 decay steps


@pytest.mark.parametrize("key,value", [("solver.optim.warmup_ratio", "1.5"), ("sft.optim.warmup_steps", "-1"),
                                       ("selfplay.optim.lr", "-1e-3"), ("em.m_optim.decay_ratio", "0")])
def test_bad_optimizer_values_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_config(None, [f"{key}={value}"])


def _llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))


def _backward(model: torch.nn.Module, seed: int) -> None:
    model.zero_grad()
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(seed))
    model(input_ids=ids, labels=ids).loss.backward()


def _five_steps_saved(model: torch.nn.Module, optim: OptimConfig, path) -> torch.optim.Optimizer:
    """An optimizer after 5 steps on random batches, its state saved at `path`."""
    optimizer = adamw_with_schedule(model, optim, 10)["optimizer"]
    for seed in range(5):
        _backward(model, seed)
        optimizer.step()
    save_state(optimizer, path)
    return optimizer


def test_a_fresh_adamw_steps_by_lr_sign_g_and_a_continued_one_does_not(tmp_path):
    """Why continuing matters: a fresh AdamW's first update is ±lr on every weight whatever the gradient's size;
    one continued from the fit the model came from scales it by that fit's second moments."""
    model = _llama()
    optim = OptimConfig(lr=1e-3, warmup_ratio=0.0, scheduler="constant")
    _five_steps_saved(model, optim, tmp_path / STATE_FILE)

    def step_size(state):
        optimizer = adamw_with_schedule(model, optim, 10, state)["optimizer"]
        before = [p.detach().clone() for p in model.parameters()]
        _backward(model, 99)
        optimizer.step()
        delta = torch.cat([(p.detach() - b).flatten().abs()[p.grad.flatten() != 0]
                           for p, b in zip(model.parameters(), before)])  # weights this batch has a gradient for
        with torch.no_grad():
            for p, b in zip(model.parameters(), before):
                p.copy_(b)
        return delta

    fresh = step_size(None)
    assert ((fresh - 1e-3).abs() < 1e-5).float().mean() > 0.95  # all but gradients near AdamW's eps
    continued = step_size(tmp_path / STATE_FILE)
    assert ((continued - 1e-3).abs() < 1e-5).float().mean() < 0.05  # sizes follow the moments


def test_the_state_keeps_the_new_fits_hyperparameters_and_refuses_another_model(tmp_path):
    model = _llama()
    old = adamw_with_schedule(model, OptimConfig(lr=2e-3, warmup_ratio=0.0), 10)["optimizer"]
    _backward(model, 0)
    old.step()
    save_state(old, tmp_path / STATE_FILE)
    new = adamw_with_schedule(model, OptimConfig(lr=5e-5, warmup_ratio=0.0, betas=[0.9, 0.95]), 10,
                              tmp_path / STATE_FILE)["optimizer"]
    assert new.param_groups[0]["lr"] == 5e-5 and new.param_groups[0]["betas"] == (0.9, 0.95)
    for p in model.parameters():
        assert torch.equal(new.state[p]["exp_avg_sq"], old.state[p]["exp_avg_sq"])
    other = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="another model"):
        load_state(adamw_with_schedule(other, OptimConfig(), 10)["optimizer"], tmp_path / STATE_FILE)
    with pytest.raises(FileNotFoundError, match="keep_state"):
        load_state(new, tmp_path / "missing.pt")


def test_a_fit_continues_the_state_its_base_was_exported_with(tiny_dir, math_triples, tmp_path):
    """fit → export with its optimizer → a second fit of the export starts from exactly those moments."""
    L.seed_everything(0, verbose=False)
    pairs = [rationale_model_example(default_format("rationale_model"), t.concepts, t.level, t.problem, t.rationale)
             for t in math_triples[:32]]
    tokenizer = load_tokenizer(tiny_dir)
    data = PairDataModule(tokenizer, pairs, pairs[:8], batch_size=8, max_length=256)
    cpu = TrainerConfig(enable_progress_bar=False, accelerator="cpu")
    module = WeightedNLLModule(load_model(tiny_dir), OptimConfig(lr=1e-3, keep_state=True))
    trainer = build_trainer(cpu, max_epochs=1, default_root_dir=tmp_path / "a")
    trainer.fit(module, datamodule=data)
    export_trained(trainer, tokenizer, tmp_path / "model", "float32", optimizer=True)
    saved = trainer.optimizers[0].state_dict()["state"]

    second = WeightedNLLModule(load_model(tmp_path / "model"), OptimConfig(lr=1e-4, continue_state=True),
                               optimizer_state=tmp_path / "model" / STATE_FILE)
    seen = {}

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            if not seen:
                seen.update({k: {n: t.clone() for n, t in v.items()}  # AdamW updates its tensors in place
                             for k, v in trainer.optimizers[0].state_dict()["state"].items()})

    build_trainer(cpu, max_epochs=1, default_root_dir=tmp_path / "b", callbacks=[Record()]).fit(second, datamodule=data)
    assert seen.keys() == saved.keys()
    assert all(torch.equal(seen[k]["exp_avg"], saved[k]["exp_avg"]) for k in saved)
    assert float(seen[0]["step"]) == trainer.global_step


def test_a_bf16_fit_continues_torch_optimis_step_count_and_refuses_another_optimizer(tmp_path):
    """torch-optimi (bf16 weights) keeps its step count in the parameter groups, not per parameter: a continued
    fit must carry it, or the saved moments are bias-corrected as if at step 1."""
    model = _llama().bfloat16()
    optim = OptimConfig(lr=1e-3, warmup_ratio=0.0, scheduler="constant")
    first = _five_steps_saved(model, optim, tmp_path / STATE_FILE)
    again = adamw_with_schedule(model, OptimConfig(lr=5e-5), 10, tmp_path / STATE_FILE)["optimizer"]
    assert again.param_groups[0]["step"] == first.param_groups[0]["step"] == 5
    assert again.param_groups[0]["lr"] == pytest.approx(5e-5 / 2)  # this fit's lr (one warmup step of 1)
    with pytest.raises(ValueError, match="torch-optimi|another model|saved by"):
        load_state(adamw_with_schedule(_llama(), optim, 10)["optimizer"], tmp_path / STATE_FILE)
