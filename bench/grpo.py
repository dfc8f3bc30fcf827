"""GRPO end-to-end throughput: our online round (`GRPOModule` + `OnlineRollouts`: the HF engine samples, the policy
trains on prefix-shared rows, weights pushed to the engine every step, Lightning) versus TRL's `GRPOTrainer` (HF
generation, no vLLM) on the same tiny model, problems, group size, completion length, steps and reward (our math
equivalence), measured in one run. Prints tokens/s of each and, last, `grpo tokens/s ours/trl: X`.

Tokens: for every rollout, its generated tokens plus the tokens trained on (prompt + completion), counted from what
each side actually sampled (the two draw different completions). Timed: the whole fit, generation, rewards, updates
and model loading (one policy on TRL's side; policy + engine copy on ours). Both sides: G rollouts at temperature 1, the DAPO loss with ε 0.2 /
0.28, β 0, one step per generation batch, no importance-sampling correction (TRL applies it with vLLM only), every
group trained (no zero-variance filtering), fp32 on CPU. (Our defaults also filter zero-variance groups and weigh
tokens by importance — off here, to time the same work as TRL's.)

Run: python bench/grpo.py [--steps 12] [--problems-per-step 8] [--group 8] [--max-new-tokens 96]

Where the time goes (ours, cProfile, 2026-12-05): 8.5 of 13 s in HF `generate` (the same kernel TRL samples with),
4 s in the updates; our lead comes from the updates (prefix-shared rows, the chunked LM head).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from tiny_model import DEFAULT_CACHE, bench_model

from promptcot_pl.config import EngineConfig, OptimConfig, SamplingConfig, TrainerConfig
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import solver_prompt
from promptcot_pl.data.records import Problem
from promptcot_pl.generation import ServedEngine
from promptcot_pl.generation.hf import HFEngine
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.stages.selfplay.config import GRPOConfig
from promptcot_pl.stages.selfplay.grpo_module import GRPOModule
from promptcot_pl.stages.selfplay.online import GenerationBatches, OnlineRollouts
from promptcot_pl.trainer import build_trainer
from promptcot_pl.verify.rewards import Rewards

RAW = default_format("solver")  # raw prompts: TRL is given the same strings
LR = 1e-5


def ours(model_dir: Path, problems: list[Problem], args) -> tuple[float, int]:
    tokenizer = load_tokenizer(model_dir)
    grpo = GRPOConfig(problems_per_step=args.problems_per_step, filter_zero_variance=False, max_resample=0,
                      importance_sampling=False)
    sampling = SamplingConfig(n=args.group, temperature=1.0, max_new_tokens=args.max_new_tokens)
    out = Path(tempfile.mkdtemp())
    L.seed_everything(0, verbose=False)
    start = time.perf_counter()
    engine = ServedEngine(HFEngine(model_dir, EngineConfig(progress=False)), model_dir)
    module = GRPOModule(load_model(model_dir), OptimConfig(lr=LR, warmup_ratio=0.0, scheduler="constant"), grpo)
    online = OnlineRollouts(engine, RAW, problems, Rewards(), tokenizer, sampling, grpo, out, seed=0, max_length=1024)
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False, log_every_n_steps=1000), max_epochs=1,
                            default_root_dir=out, callbacks=[online])
    trainer.fit(module, datamodule=GenerationBatches(len(problems), args.problems_per_step, 1, 1, seed=0))
    seconds = time.perf_counter() - start
    tokens = 0
    for path in (out / "generations").glob("gen_*.pt"):
        for group in torch.load(path, weights_only=False)["groups"]:
            tokens += sum(2 * len(c) + len(group.prompt_ids) for c in group.completions)
    return seconds, tokens


def trl(model_dir: Path, problems: list[Problem], args) -> tuple[float, int]:
    from datasets import Dataset
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    tokenizer = load_tokenizer(model_dir)
    by_prompt = {solver_prompt(RAW, p.problem): p for p in problems}
    counted = [0]
    rewards = Rewards()

    def math_reward(prompts, completions, completion_ids, **_):
        counted[0] += sum(2 * len(ids) + len(tokenizer(p).input_ids) for p, ids in zip(prompts, completion_ids))
        return [r or 0.0 for r, _ in rewards.judge(completions, [by_prompt[p] for p in prompts])]

    config = TRLConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.problems_per_step * args.group,
                       num_generations=args.group, max_completion_length=args.max_new_tokens, steps_per_generation=1,
                       gradient_accumulation_steps=1, max_steps=args.steps, learning_rate=LR,
                       lr_scheduler_type="constant", warmup_steps=0, temperature=1.0, beta=0.0, loss_type="dapo",
                       epsilon=0.2, epsilon_high=0.28, use_cpu=True, bf16=False, report_to="none",
                       logging_steps=1000, save_strategy="no", disable_tqdm=True, seed=0, dataloader_num_workers=0)
    start = time.perf_counter()
    trainer = GRPOTrainer(model=load_model(model_dir), reward_funcs=math_reward, args=config,
                          train_dataset=Dataset.from_dict({"prompt": list(by_prompt)}), processing_class=tokenizer)
    trainer.train()
    return time.perf_counter() - start, counted[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ~12 s a side on 2 cores: at 6 steps × 4 problems × 64 tokens (~3 s a side) fixed costs blur the ratio
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--problems-per-step", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--cache", default=DEFAULT_CACHE)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("promptcot_pl").setLevel(logging.ERROR)
    torch.manual_seed(0)
    model_dir, triples = bench_model(args.cache)
    problems = [Problem(id=t.id, domain="math", problem=t.problem, answer=t.answer)
                for t in triples[: args.steps * args.problems_per_step]]
    detail = f"{args.steps} steps × {args.problems_per_step} problems × G {args.group}, ≤ {args.max_new_tokens} new tokens"
    rates = {}
    for name, run in (("ours (OnlineRollouts + GRPOModule)", ours), ("TRL GRPOTrainer", trl)):
        seconds, tokens = run(model_dir, problems, args)
        rates[name] = tokens / seconds
        print(f"{name:36s}: {rates[name]:8.0f} tokens/s ({tokens} tokens in {seconds:.1f} s; {detail})", flush=True)
    ratio = rates["ours (OnlineRollouts + GRPOModule)"] / rates["TRL GRPOTrainer"]
    print(f"grpo tokens/s ours/trl: {ratio:.2f}")


if __name__ == "__main__":
    main()
