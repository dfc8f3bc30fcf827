"""Precision is a policy: a model stored in bf16 (`model.dtype=bfloat16`, what engines serve) is fitted
under `bf16-mixed` over fp32 master weights, so AdamW's updates at the paper's lr 1e-6 are kept; bf16 master weights
would round nearly all of them away, and `bf16-true` is refused at load, naming the keys."""

import pytest
import torch

from promptcot_pl.config import ConfigError, OptimConfig, TrainerConfig
from promptcot_pl.experiment import load_config
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.trainer import build_trainer, training_dtype

PAIRS = [(f"Problem:\nWhat is {a} + {b}?\nSolution:\n", f"The answer is {a + b}.") for a in range(8) for b in range(4)]


class PlainAdamW(WeightedNLLModule):
    """The reference the recipes used before: torch's AdamW on whatever dtype the weights are stored in."""

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.optim.lr)


def _changed_share(bf16_dir, storage: str, tmp_path, precision: str = "bf16-mixed", module=WeightedNLLModule) -> float:
    """Share of the checkpoint's weights that moved after 10 steps at lr 1e-6, compared in the storage dtype the
    fit keeps (and exports: fits save their own dtype, so the next fit starts from the same). Under Kahan summation
    a weight is its stored value plus its compensation: updates below bf16's resolution wait there, not lost."""
    trainer_cfg = TrainerConfig(precision=precision, enable_progress_bar=False, gradient_clip_val=None)
    model = load_model(bf16_dir, storage)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    data = PairDataModule(load_tokenizer(bf16_dir), PAIRS, PAIRS[:4], batch_size=4, max_length=128)
    trainer = build_trainer(trainer_cfg, max_epochs=None, max_steps=10, default_root_dir=tmp_path)
    trainer.fit(module(model, OptimConfig(lr=1e-6, scheduler="constant", warmup_ratio=0.0)), datamodule=data)
    assert trainer.global_step == 10
    state = trainer.optimizers[0].state
    after = {k: v.detach().float() + (state[v]["kahan_comp"].float() if "kahan_comp" in state.get(v, {}) else 0)
             for k, v in model.named_parameters()}
    # the input embedding's rows of tokens absent from the batches get no gradient at all: left out
    dense = [k for k in after if "embed_tokens" not in k]
    changed = sum(int((after[k] != before[k].float()).sum()) for k in dense)
    return changed / sum(before[k].numel() for k in dense)


def test_a_bf16_stored_model_learns_at_lr_1e6_under_bf16_mixed(tiny_dir, tmp_path):
    bf16_dir = tmp_path / "bf16"
    load_model(tiny_dir, "bfloat16").save_pretrained(bf16_dir)
    load_tokenizer(tiny_dir).save_pretrained(bf16_dir)
    assert training_dtype(TrainerConfig(precision="bf16-mixed")) == "float32"
    kept = _changed_share(bf16_dir, training_dtype(TrainerConfig(precision="bf16-mixed")), tmp_path / "a")
    assert kept > 0.9  # fp32 masters: the updates are kept
    # what the recipes did before: the storage dtype was model.dtype, and the updates rounded away
    lost = _changed_share(bf16_dir, "bfloat16", tmp_path / "b", module=PlainAdamW)
    assert lost < 0.1, lost


def test_bf16_true_opted_in_with_kahan_summation_keeps_the_updates(tiny_dir, tmp_path):
    bf16_dir = tmp_path / "bf16"
    load_model(tiny_dir, "bfloat16").save_pretrained(bf16_dir)
    load_tokenizer(tiny_dir).save_pretrained(bf16_dir)
    cfg = load_config(None, ["trainer.precision=bf16-true", "trainer.bf16_true_optimizer=kahan"])
    assert training_dtype(cfg.trainer) == "bfloat16"  # half the memory of fp32 masters
    kept = _changed_share(bf16_dir, "bfloat16", tmp_path / "a", precision="bf16-true")
    print(f"bf16-true + Kahan: {kept:.1%} of weights moved")
    assert kept > 0.9, kept
    lost = _changed_share(bf16_dir, "bfloat16", tmp_path / "b", precision="bf16-true", module=PlainAdamW)
    print(f"bf16-true + plain AdamW: {lost:.1%}")
    assert lost < 0.1, lost  # the same fit with plain AdamW


def test_bf16_true_is_refused_naming_the_keys():
    with pytest.raises(ConfigError, match=r"key 'trainer.precision'.*bf16-mixed.*model.dtype=bfloat16.*"
                                          r"bf16_true_optimizer=kahan"):
        load_config(None, ["trainer.precision=bf16-true", "model.dtype=bfloat16"])
    with pytest.raises(ConfigError, match=r"trainer.precision"):
        load_config(None, ["trainer.precision=bf16-mix"])  # a typo fails at load, not when the first fit starts
