"""Precision is a policy (REVIEW C1): a model stored in bf16 (`model.dtype=bfloat16`, what engines serve) is fitted
under `bf16-mixed` over fp32 master weights, so AdamW's updates at the paper's lr 1e-6 are kept; bf16 master weights
would round nearly all of them away, and `bf16-true` is refused at load, naming the keys."""

import pytest

from promptcot_pl.config import ConfigError, load_config
from promptcot_pl.config.schema import OptimConfig, TrainerConfig
from promptcot_pl.data.datamodule import PairDataModule
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import SFTModule
from promptcot_pl.trainer import build_trainer, training_dtype

PAIRS = [(f"Problem:\nWhat is {a} + {b}?\nSolution:\n", f"The answer is {a + b}.") for a in range(8) for b in range(4)]


def _changed_share(bf16_dir, storage: str, tmp_path) -> float:
    """Share of the checkpoint's weights that differ after 10 steps at lr 1e-6 under bf16-mixed, compared in the
    storage dtype the fit keeps (and exports: fits save their own dtype, so the next fit starts from the same)."""
    trainer_cfg = TrainerConfig(precision="bf16-mixed", enable_progress_bar=False, gradient_clip_val=None)
    model = load_model(bf16_dir, storage)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    data = PairDataModule(load_tokenizer(bf16_dir), PAIRS, PAIRS[:4], batch_size=4, max_length=128)
    trainer = build_trainer(trainer_cfg, max_epochs=None, max_steps=10, default_root_dir=tmp_path)
    trainer.fit(SFTModule(model, OptimConfig(lr=1e-6, scheduler="constant", warmup_ratio=0.0)), datamodule=data)
    assert trainer.global_step == 10
    after = {k: v.detach() for k, v in model.state_dict().items()}
    # the input embedding's rows of tokens absent from the batches get no gradient at all: left out
    dense = [k for k in before if "embed_tokens" not in k]
    changed = sum(int((after[k] != before[k]).sum()) for k in dense)
    return changed / sum(before[k].numel() for k in dense)


def test_a_bf16_stored_model_learns_at_lr_1e6_under_bf16_mixed(tiny_dir, tmp_path):
    bf16_dir = tmp_path / "bf16"
    load_model(tiny_dir, "bfloat16").save_pretrained(bf16_dir)
    load_tokenizer(tiny_dir).save_pretrained(bf16_dir)
    assert training_dtype(TrainerConfig(precision="bf16-mixed")) == "float32"
    kept = _changed_share(bf16_dir, training_dtype(TrainerConfig(precision="bf16-mixed")), tmp_path / "a")
    assert kept > 0.9  # fp32 masters: the updates are kept
    # what the recipes did before: the storage dtype was model.dtype, and the updates rounded away
    lost = _changed_share(bf16_dir, "bfloat16", tmp_path / "b")
    assert lost < 0.1, lost


def test_bf16_true_is_refused_naming_the_keys():
    with pytest.raises(ConfigError, match=r"key 'trainer.precision'.*bf16-mixed.*model.dtype=bfloat16"):
        load_config(None, ["trainer.precision=bf16-true", "model.dtype=bfloat16"])
    with pytest.raises(ConfigError, match=r"trainer.precision"):
        load_config(None, ["trainer.precision=bf16-mix"])  # a typo fails at load, not when the first fit starts
