"""Run under `torchrun --nproc-per-node 2`: one FSDP fit step of the model at argv[1], loaded with `load_for_fit`
(rank 1 builds it on the meta device and reads nothing). Rank 0 writes JSON: whether rank 1's model was empty,
and whether the full weights FSDP holds at the start of the fit equal the checkpoint exactly.
tests/test_fsdp_meta_init.py runs it on an untied and on a tied model."""

from __future__ import annotations

import json
import sys


def main() -> None:
    import lightning as L
    import torch

    from promptcot_pl import distributed
    from promptcot_pl.config import OptimConfig, TrainerConfig
    from promptcot_pl.models import load_model, load_tokenizer
    from promptcot_pl.modules import WeightedNLLModule
    from promptcot_pl.modules.data import PairDataModule
    from promptcot_pl.trainer import build_trainer, full_state_dict, load_for_fit

    model_dir, out = sys.argv[1], sys.argv[2]
    cfg = TrainerConfig(strategy="fsdp", enable_progress_bar=False)
    model = load_for_fit(model_dir, cfg)
    empty = any(p.is_meta for p in model.parameters())
    report: dict = {}

    class Compare(L.Callback):
        def on_train_start(self, trainer, module):
            state = full_state_dict(trainer.strategy)  # gathered from both ranks' shards
            if distributed.is_zero():
                reference = load_model(model_dir).state_dict()
                got = {k.removeprefix("model."): v for k, v in state.items()}
                report["equal"] = all(torch.equal(got[k], v) for k, v in reference.items() if k in got)
                report["missing"] = sorted(set(reference) - set(got))

    pairs = [(f"Problem:\nWhat is {a} + 1?\nSolution:\n", f"{a + 1}") for a in range(8)]
    data = PairDataModule(load_tokenizer(model_dir), pairs, pairs[:2], batch_size=4, max_length=64)
    trainer = build_trainer(cfg, max_epochs=None, max_steps=1, default_root_dir=f"{out}.root", callbacks=[Compare()])
    trainer.fit(WeightedNLLModule(model, OptimConfig(lr=1e-3)), datamodule=data)
    flags = distributed.gather_objects(empty)
    if distributed.is_zero():
        with open(out, "w") as handle:
            json.dump({**report, "empty_by_rank": flags, "steps": trainer.global_step}, handle)


if __name__ == "__main__":
    from promptcot_pl import distributed

    with distributed.joined():
        main()  # a function, so that its fit's model and trainer are gone before the group is left
