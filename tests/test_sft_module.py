import lightning as L
import pytest
import torch

from promptcot_pl.config import OptimConfig, TrainerConfig
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import rationale_model_example
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.trainer import build_trainer


@pytest.mark.parametrize("packing", [False, True])
def test_fit_lowers_heldout_nll_and_changes_weights(tiny_dir, math_triples, tmp_path, packing):
    L.seed_everything(0, verbose=False)
    pairs = [rationale_model_example(default_format("rationale_model"), t.concepts, t.level, t.problem, t.rationale) for t in math_triples]
    data = PairDataModule(load_tokenizer(tiny_dir), pairs[:140], pairs[140:], batch_size=8, max_length=256,
                          packing=packing)
    module = WeightedNLLModule(load_model(tiny_dir), OptimConfig(lr=3e-3, warmup_ratio=0.1))
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False, accelerator="cpu"), max_epochs=2,
                            default_root_dir=tmp_path)
    (init,) = trainer.validate(module, datamodule=data, verbose=False)
    trainer.fit(module, datamodule=data)
    (final,) = trainer.validate(module, datamodule=data, verbose=False)
    assert final["val/nll"] < init["val/nll"] - 1.0
    changed = [k for k, v in module.model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)
    assert trainer.global_step == 2 * len(data.train_dataloader())


def test_scheduler_warms_up_then_decays(tiny_dir, math_triples, tmp_path):
    pairs = [rationale_model_example(default_format("rationale_model"), t.concepts, t.level, t.problem, t.rationale) for t in math_triples[:64]]
    data = PairDataModule(load_tokenizer(tiny_dir), pairs, pairs[:8], batch_size=8, max_length=256)
    module = WeightedNLLModule(load_model(tiny_dir), OptimConfig(lr=1e-3, warmup_ratio=0.25, scheduler="linear"))
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = build_trainer(TrainerConfig(enable_progress_bar=False, accelerator="cpu"), max_epochs=1,
                            default_root_dir=tmp_path, callbacks=[Record()])
    trainer.fit(module, datamodule=data)
    assert lrs[0] == pytest.approx(1e-3 / 3) and max(lrs) == pytest.approx(1e-3) and lrs[-1] < lrs[2]  # 2 warmup steps
