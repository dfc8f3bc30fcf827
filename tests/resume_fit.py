"""Run as a script: a 4-epoch fit of the model at argv[2] (6 batches an epoch) with a checkpoint every argv[4] steps.
argv[1] = "plain" (uninterrupted), "kill" (the process dies right after step argv[5]) or "resume" (from the last
checkpoint); argv[6] = "packed" packs the rows. Prints "RESULT <global step> <sum of the weights> <padding waste>".
tests/test_trainer_resume.py runs it."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    import lightning as L
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint

    from promptcot_pl.config import OptimConfig, TrainerConfig
    from promptcot_pl.models import load_model, load_tokenizer
    from promptcot_pl.modules import WeightedNLLModule
    from promptcot_pl.modules.data import PairDataModule
    from promptcot_pl.trainer import build_trainer

    mode, model_dir, root, every, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    packed = sys.argv[6:] == ["packed"]
    pairs = [(f"Problem:\nWhat is {a} + 1?\nSolution:\n", f"{a + 1}") for a in range(24)]
    L.seed_everything(0, workers=True, verbose=False)
    data = PairDataModule(load_tokenizer(model_dir), pairs, pairs[:4], batch_size=4 // (1 + packed), max_length=64,
                          packing=packed, seed=0)

    class Die(Callback):  # after ModelCheckpoint's hook: the checkpoint of this step is on disk, as in a kill -9
        def on_train_batch_end(self, trainer, *args):
            if mode == "kill" and trainer.global_step == kill_at:
                os._exit(3)

    checkpoint = ModelCheckpoint(dirpath=f"{root}/ck", save_last=True, save_top_k=0, every_n_train_steps=every)
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False), max_epochs=4, default_root_dir=root,
                            callbacks=[checkpoint, Die()])
    module = WeightedNLLModule(load_model(model_dir), OptimConfig(lr=1e-3))
    trainer.fit(module, datamodule=data, ckpt_path=f"{root}/ck/last.ckpt" if mode == "resume" else None)
    print("RESULT", trainer.global_step, repr(sum(float(p.double().sum()) for p in module.parameters())),
          repr(module.padding_waste))
