"""DPO training throughput: our fit (`DPOModule` on prefix-shared rows, reference log-probs from one batched
no-grad pass, Lightning) versus TRL's `DPOTrainer` on the same tiny model, pairs, batch size and epochs,
measured in one run. Prints tokens/s and the ratios.

Tokens are counted the same way for every contender: prompt + chosen + prompt + rejected per pair per epoch (what
a padded [chosen; rejected] batch holds, without padding). Timed: the whole fit including the reference pass
(ours: `score_pairs` before training; TRL default: a reference forward in every step; TRL with
`precompute_ref_log_probs=True`: a pass over the data before training). Not timed: model loading, tokenization.

Run: python bench/dpo.py [--pairs 1024] [--batch-size 16] [--epochs 1]
Model: the offline tiny model (hidden 128, 2 layers) built on the math seed corpus; CPU.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
import warnings

import lightning as L
import torch
from tiny_model import DEFAULT_CACHE, bench_model, race

from promptcot_pl.config import OptimConfig, TrainerConfig
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import solver_prompt
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.runner.scoring import score_pairs
from promptcot_pl.stages.selfplay.config import DPOConfig
from promptcot_pl.stages.selfplay.data import PreferenceDataModule, encode_preferences
from promptcot_pl.stages.selfplay.module import DPOModule
from promptcot_pl.trainer import build_trainer

# raw prompts (the release's math instruction, no chat template): TRL is given the same strings
RAW = default_format("solver")

LR = 1e-4


def ours(model_dir, pairs, batch_size: int, epochs: int) -> float:
    tokenizer = load_tokenizer(model_dir)
    rows, kept = encode_preferences(tokenizer, pairs, max_length=512)
    assert len(kept) == len(pairs)
    policy = load_model(model_dir)
    trainer_cfg = TrainerConfig(enable_progress_bar=False, log_every_n_steps=1000)
    root = tempfile.mkdtemp()
    L.seed_everything(0, verbose=False)
    start = time.perf_counter()
    flat = [(p, c) for p, chosen, rejected in pairs for c in (chosen, rejected)]
    ref, _ = score_pairs(model_dir, flat, trainer_cfg=trainer_cfg, max_length=512,
                         root_dir=root)
    module = DPOModule(policy, OptimConfig(lr=LR, warmup_ratio=0.0, scheduler="constant"), DPOConfig())
    data = PreferenceDataModule(rows, tokenizer.pad_token_id, batch_size, ref=ref.view(-1, 2))
    build_trainer(trainer_cfg, max_epochs=epochs, default_root_dir=root).fit(module, datamodule=data)
    return time.perf_counter() - start


def trl(model_dir, pairs, batch_size: int, epochs: int, precompute: bool) -> float:
    from datasets import Dataset
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    tokenizer = load_tokenizer(model_dir)
    args = TRLConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch_size, num_train_epochs=epochs,
                     learning_rate=LR, lr_scheduler_type="constant", beta=0.1, use_cpu=True, report_to="none",
                     max_length=None, logging_steps=1000, save_strategy="no", disable_tqdm=True, seed=0,
                     precompute_ref_log_probs=precompute, dataloader_num_workers=0)
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in pairs]
    trainer = DPOTrainer(model=load_model(model_dir), ref_model=load_model(model_dir), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cache", default=DEFAULT_CACHE)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.manual_seed(0)

    model_dir, triples = bench_model(args.cache)
    rng = random.Random(0)
    pairs = []  # chosen: the problem's worked solution; rejected: another problem's
    for t in (triples * (1 + args.pairs // len(triples)))[: args.pairs]:
        other = rng.choice(triples)
        pairs.append((solver_prompt(RAW, t.problem), t.solution, other.solution))
    tokenizer = load_tokenizer(model_dir)
    tokens = args.epochs * sum(2 * len(tokenizer(p).input_ids) + len(tokenizer(c, add_special_tokens=False).input_ids)
                               + len(tokenizer(r, add_special_tokens=False).input_ids) + 2 for p, c, r in pairs)

    ours(model_dir, pairs[: args.batch_size], args.batch_size, 1)  # warm-up (imports, thread pools)
    contenders = {
        "ours (precomputed ref, prefix-shared)": lambda: ours(model_dir, pairs, args.batch_size, args.epochs),
        "TRL DPOTrainer (default: ref model)": lambda: trl(model_dir, pairs, args.batch_size, args.epochs, False),
        "TRL DPOTrainer (precompute_ref_log_probs)": lambda: trl(model_dir, pairs, args.batch_size, args.epochs, True),
    }
    race(contenders, tokens, f"{len(pairs)} pairs × {args.epochs} epochs, batch {args.batch_size}")


if __name__ == "__main__":
    main()
