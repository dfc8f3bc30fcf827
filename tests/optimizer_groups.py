"""Run under `torchrun --nproc-per-node 2` (or alone): one step of a real fit with `trainer.strategy` = argv[3];
rank 0 writes the optimizer's groups — weight decay and the (wrapper-free) names of their parameters — as JSON.
tests/test_optimizer_groups.py compares FSDP with DDP and with one process."""

from __future__ import annotations

import json
import sys


def main() -> None:
    import lightning as L

    from promptcot_pl import distributed
    from promptcot_pl.config import OptimConfig, TrainerConfig
    from promptcot_pl.models import load_model, load_tokenizer
    from promptcot_pl.modules import WeightedNLLModule
    from promptcot_pl.modules.data import PairDataModule
    from promptcot_pl.modules.optim import clean_name
    from promptcot_pl.trainer import build_trainer

    model_dir, out, strategy = sys.argv[1], sys.argv[2], sys.argv[3]
    groups: list[dict] = []

    class Record(L.Callback):
        def on_train_start(self, trainer, module):
            names = {id(p): clean_name(n) for n, p in module.named_parameters()}
            groups.extend({"weight_decay": g["weight_decay"], "names": sorted(names[id(p)] for p in g["params"]),
                           "ndim": sorted({p.ndim for p in g["params"]})} for g in trainer.optimizers[0].param_groups)

    pairs = [(f"Problem:\nWhat is {a} + 1?\nSolution:\n", f"{a + 1}") for a in range(8)]
    data = PairDataModule(load_tokenizer(model_dir), pairs, pairs[:2], batch_size=4, max_length=64)
    trainer = build_trainer(TrainerConfig(strategy=strategy, enable_progress_bar=False), max_epochs=None,
                            max_steps=1, default_root_dir=f"{out}.root", callbacks=[Record()])
    trainer.fit(WeightedNLLModule(load_model(model_dir), OptimConfig(lr=1e-3, weight_decay=0.1)), datamodule=data)
    if distributed.is_zero():
        with open(out, "w") as handle:
            json.dump(groups, handle)


if __name__ == "__main__":
    from promptcot_pl import distributed

    with distributed.joined():
        main()  # a function, so that its fit's model and trainer are gone before the group is left
