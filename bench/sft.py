"""SFT training throughput and padding waste: our fit (`WeightedNLLModule` on exactly packed rows, Lightning) versus TRL's
`SFTTrainer` (padded batches, its default; completion-only loss) on the same tiny model, data, batch size and
epochs, measured in one run. Prints tokens/s, padding waste and the ratio.

Tokens are real (non-padding) tokens: prompt + completion + EOS per example per epoch, the same count for every
contender. Padding waste = padded positions / all positions of the batches the model saw. Timed: the fit only
(not model loading or tokenization).

Run: python bench/sft.py [--examples 2048] [--batch-size 16] [--epochs 1]
Model: the offline tiny model (hidden 128, 2 layers) built on the math seed corpus; CPU.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings

import lightning as L
import torch
from tiny_model import DEFAULT_CACHE, bench_model, race

from promptcot_pl.accounting import padding_waste
from promptcot_pl.config import OptimConfig, TrainerConfig
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import solver_example
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.trainer import build_trainer

# raw prompts (the release's math instruction, no chat template): TRL is given the same strings
RAW = default_format("solver")

LR = 1e-4


def ours(model_dir, pairs, batch_size: int, epochs: int, max_length: int, packing: bool) -> tuple[float, float]:
    """(seconds, padding waste). With packing, a batch holds `batch_size` rows of up to `max_length` tokens, each
    row several examples; the batch size in examples is matched by `rows = batch_size * mean_len / max_length`."""
    tokenizer = load_tokenizer(model_dir)
    data = PairDataModule(tokenizer, pairs, pairs[:16], batch_size=batch_size, max_length=max_length,
                          packing=packing)
    data.setup()
    if packing:  # the same number of examples per optimizer step as the padded contenders
        data.batch_size = max(1, round(batch_size * len(pairs) / len(data.train_items)))
    module = WeightedNLLModule(load_model(model_dir), OptimConfig(lr=LR, warmup_ratio=0.0, scheduler="constant"))
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False, log_every_n_steps=1000), max_epochs=epochs,
                            default_root_dir=tempfile.mkdtemp())
    trainer.limit_val_batches = 0
    L.seed_everything(0, verbose=False)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    return time.perf_counter() - start, padding_waste(trainer)


def trl(model_dir, pairs, batch_size: int, epochs: int) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class Waste(TrainerCallback):  # counts the padded positions of every batch the model sees
        real = seen = 0

    def count(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is not None and module.training:
            Waste.real += int(mask.sum())
            Waste.seen += mask.numel()

    tokenizer = load_tokenizer(model_dir)
    args = SFTConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch_size, num_train_epochs=epochs,
                     learning_rate=LR, lr_scheduler_type="constant", use_cpu=True, report_to="none", max_length=None,
                     logging_steps=1000, save_strategy="no", disable_tqdm=True, seed=0, dataloader_num_workers=0,
                     completion_only_loss=True)
    model = load_model(model_dir)
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list([{"prompt": p, "completion": c} for p, c in pairs]))
    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    hook.remove()
    return seconds, 1.0 - Waste.real / Waste.seen if Waste.seen else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256)  # the quickstart's data.max_length
    parser.add_argument("--cache", default=DEFAULT_CACHE)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.manual_seed(0)

    model_dir, triples = bench_model(args.cache)
    pairs = [solver_example(RAW, t.problem, t.solution) for t in (triples * (1 + args.examples // len(triples)))][
        : args.examples]
    tokenizer = load_tokenizer(model_dir)
    tokens = args.epochs * sum(len(tokenizer(p).input_ids) + len(tokenizer(c, add_special_tokens=False).input_ids) + 1
                               for p, c in pairs)
    ours(model_dir, pairs[:64], args.batch_size, 1, args.max_length, True)  # warm-up (imports, thread pools)
    contenders = {
        "ours (packed rows)": lambda: ours(model_dir, pairs, args.batch_size, args.epochs, args.max_length, True),
        "ours (padded batches)": lambda: ours(model_dir, pairs, args.batch_size, args.epochs, args.max_length, False),
        "TRL SFTTrainer (padded)": lambda: trl(model_dir, pairs, args.batch_size, args.epochs),
    }
    race(contenders, tokens, f"{len(pairs)} examples × {args.epochs} epochs, batch {args.batch_size}")


if __name__ == "__main__":
    main()
