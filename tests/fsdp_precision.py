"""Run under `torchrun --nproc-per-node 1`: two FSDP steps of the model at argv[1] under `trainer.precision` argv[2],
through `build_trainer` and the real DataModule, then scoring of long sequences under the same FSDP precision and
by the plain fp32 model (no FSDP). Writes JSON to argv[3]: the dtype of RoPE's `inv_freq` after the steps, its
largest relative error against the checkpoint's, the number of
activation-checkpointed layers, the dtype FSDP reduces gradients in, and both sets of per-token
log-probs.
tests/test_fsdp_precision.py runs it."""

from __future__ import annotations

import json
import sys


def main() -> None:
    import lightning as L

    from promptcot_pl.config import OptimConfig, TrainerConfig
    from promptcot_pl.models import load_model, load_tokenizer
    from promptcot_pl.modules import WeightedNLLModule
    from promptcot_pl.modules.data import PairDataModule
    from promptcot_pl.runner.scoring import score_pairs
    from promptcot_pl.trainer import build_trainer, load_for_fit

    model_dir, precision, out = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = TrainerConfig(strategy="fsdp", precision=precision, accelerator="cpu", devices="1",
                        activation_checkpointing=True, enable_progress_bar=False)
    reference = dict(load_model(model_dir).named_buffers())["model.rotary_emb.inv_freq"]
    seen: dict = {}

    class Buffers(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            (inv_freq,) = [b for name, b in module.named_buffers() if name.endswith("rotary_emb.inv_freq")]
            seen["dtype"] = str(inv_freq.dtype).removeprefix("torch.")
            seen["max_rel_err"] = float(((inv_freq.float() - reference) / reference).abs().max())
            seen["checkpointed"] = sum(type(m).__name__ == "CheckpointWrapper" for m in trainer.strategy.model.modules())
            seen["layers"] = module.model.config.num_hidden_layers

    pairs = [(f"Problem:\nWhat is {a} + 1?\nSolution:\n", f"{a + 1}") for a in range(8)]
    data = PairDataModule(load_tokenizer(model_dir), pairs, pairs[:2], batch_size=4, max_length=64)
    trainer = build_trainer(cfg, max_epochs=None, max_steps=2, default_root_dir=f"{out}.root", callbacks=[Buffers()])
    trainer.fit(WeightedNLLModule(load_for_fit(model_dir, cfg), OptimConfig(lr=1e-3)), datamodule=data)

    # long targets: the rotary angles of distant positions are where rounded frequencies show
    long = [(f"Problem {k}:\n" + " ".join(str(7 * k + i) for i in range(150)), " ".join(str(i) for i in range(150)))
            for k in range(4)]
    fsdp, tokens = score_pairs(model_dir, long, trainer_cfg=cfg, max_length=1024, root_dir=f"{out}.score")
    plain, _ = score_pairs(model_dir, long, trainer_cfg=TrainerConfig(accelerator="cpu", enable_progress_bar=False),
                           max_length=1024, root_dir=f"{out}.score")
    reduce_dtype = str(trainer.strategy.mixed_precision_config.reduce_dtype).removeprefix("torch.")
    with open(out, "w") as handle:
        json.dump({**seen, "steps": trainer.global_step, "tokens": tokens.tolist(), "reduce_dtype": reduce_dtype,
                   "fsdp_per_token": (fsdp / tokens).tolist(), "plain_per_token": (plain / tokens).tolist()}, handle)


if __name__ == "__main__":
    from promptcot_pl import distributed

    with distributed.joined():
        main()  # a function, so that its fit's model and trainer are gone before the group is left
