"""EM rationale scoring as the E-step does it — log p_θ(z,x|c) and log q_φ(z|c,x) for K candidates per pair — with
batched `Trainer.predict` passes: prefix-shared rows (the default: a prompt encoded once for several of its
candidates) and plain padded batches, versus one candidate per forward pass (the same code, padded, batch size 1),
measured in one run; prints candidates/s and the ratios.

Run: python bench/em_scoring.py [--pairs 64] [--k 8] [--score-tokens 8192]
Model: the offline tiny model (hidden 128, 2 layers) built on the math seed corpus; CPU unless a GPU exists.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

from tiny_model import DEFAULT_CACHE, bench_model

from promptcot_pl.config import TrainerConfig
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import prompt_model_example, rationale_model_example
from promptcot_pl.runner.scoring import score_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--score-tokens", type=int, default=8192, help="token positions per scoring batch")
    parser.add_argument("--cache", default=DEFAULT_CACHE)
    args = parser.parse_args()

    model, triples = bench_model(args.cache)
    rng = random.Random(0)
    p_pairs, q_pairs = [], []  # K rationales per pair (other pairs' rationales), scored under both models
    for t in triples[: args.pairs]:
        for _ in range(args.k):
            z = rng.choice(triples).rationale
            p_pairs.append(prompt_model_example(default_format("prompt_model"), t.concepts, t.level, z, t.problem))
            q_pairs.append(rationale_model_example(default_format("rationale_model"), t.concepts, t.level, t.problem, z))
    root = tempfile.mkdtemp()
    rates = {}
    modes = {"prefix-shared": (args.score_tokens, True), "padded batches": (args.score_tokens, False),
             "one per forward": (1, False)}
    for name, (budget, share) in modes.items():
        trainer = TrainerConfig(enable_progress_bar=False, score_tokens=budget)
        kwargs = dict(trainer_cfg=trainer, max_length=512, root_dir=root, share_prefix=share)
        score_pairs(model, p_pairs[:4], **kwargs)  # warm-up
        start = time.perf_counter()
        _, p_tokens = score_pairs(model, p_pairs, **kwargs)
        _, q_tokens = score_pairs(model, q_pairs, **kwargs)
        rates[name] = len(p_pairs) / (time.perf_counter() - start)
        print(f"{name:16s}: {rates[name]:8.1f} candidates/s ({len(p_pairs)} candidates × 2 models, "
              f"{int(p_tokens.sum() + q_tokens.sum())} target tokens)")
    for name in ("prefix-shared", "padded batches"):
        print(f"ratio {name} / one-per-forward: {rates[name] / rates['one per forward']:.2f}")


if __name__ == "__main__":
    main()
