"""Run as a script: a 4-epoch fit of the model at argv[2] (6 batches an epoch) with a checkpoint every argv[4] steps.
argv[1] = "plain" (uninterrupted), "kill" (the process dies right after step argv[5]), "kill_saved" (it dies right
after writing the checkpoint of step argv[5]) or "resume" (from the last checkpoint); further arguments: "packed"
packs the rows, "workers" loads batches in a worker process (data.num_workers=1). Prints "RESULT <global step> <sum of the weights> <padding waste>"; every step the loggers were given is
appended to <argv[3]>/logged_steps as it is given (a kill loses nothing written). tests/test_trainer_resume.py
runs it."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    import lightning as L
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.loggers import Logger

    from promptcot_pl.accounting import padding_waste
    from promptcot_pl.config import OptimConfig, TrainerConfig
    from promptcot_pl.models import load_model, load_tokenizer
    from promptcot_pl.modules import WeightedNLLModule
    from promptcot_pl.modules.data import PairDataModule
    from promptcot_pl.trainer import MetricsFirstCheckpoint, build_trainer

    mode, model_dir, root, every, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    packed, workers = "packed" in sys.argv[6:], "workers" in sys.argv[6:]
    os.makedirs(root, exist_ok=True)
    pairs = [(f"Problem:\nWhat is {a} + 1?\nSolution:\n", f"{a + 1}") for a in range(24)]
    L.seed_everything(0, workers=True, verbose=False)
    # batch_size counts examples, packed or not: 4 makes about 2 packed rows a step (some padding to count)
    data = PairDataModule(load_tokenizer(model_dir), pairs, pairs[:4], batch_size=4, max_length=64,
                          packing=packed, seed=0, num_workers=1 if workers else 0)

    class Die(Callback):
        def on_train_batch_end(self, trainer, *args):
            if mode == "kill" and trainer.global_step == kill_at:
                os._exit(3)

    class Steps(Logger):  # the steps a logger was given, on disk at once
        name, version = "steps", "0"

        def log_metrics(self, metrics, step=None):
            if "train/loss" in metrics:
                with open(f"{root}/logged_steps", "a") as handle:
                    handle.write(f"{step} {metrics['train/loss']!r}\n")

        def log_hyperparams(self, *args, **kwargs):
            pass

        def after_save_checkpoint(self, checkpoint_callback):  # Lightning runs checkpoint callbacks last
            if mode == "kill_saved" and checkpoint_callback._last_global_step_saved == kill_at:
                os._exit(3)

    checkpoint = MetricsFirstCheckpoint(dirpath=f"{root}/ck", save_last=True, save_top_k=0, every_n_train_steps=every)
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False, log_every_n_steps=1), max_epochs=4,
                            default_root_dir=root, callbacks=[checkpoint, Die()], logger=Steps())
    module = WeightedNLLModule(load_model(model_dir), OptimConfig(lr=1e-3))
    trainer.fit(module, datamodule=data, ckpt_path=f"{root}/ck/last.ckpt" if mode == "resume" else None)
    print("RESULT", trainer.global_step, repr(sum(float(p.double().sum()) for p in module.parameters())),
          repr(padding_waste(trainer)))
