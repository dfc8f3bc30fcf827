"""Generation throughput on the same prompts, measured in one run: HF batched (our engine) versus HF one prompt at a
time (the same engine with a one-row batch budget), and the vLLM engine when vLLM is installed.

Run: python bench/generation.py [--prompts 64] [--new-tokens 64]
Uses the offline tiny model built on the math seed corpus (hidden 128, 2 layers), fp32, CPU unless a GPU exists.
"""

from __future__ import annotations

import argparse
import time

from tiny_model import DEFAULT_CACHE, bench_model

from promptcot_pl.config import EngineConfig, SamplingConfig
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import prompt_model_example
from promptcot_pl.generation import build_engine


def tokens_per_second(engine, prompts, sampling) -> tuple[float, int]:
    engine.generate(prompts[:2], sampling)  # warm-up
    start = time.perf_counter()
    results = engine.generate(prompts, sampling)
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for group in results for c in group)
    return tokens / seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--cache", default=DEFAULT_CACHE)
    args = parser.parse_args()

    model, triples = bench_model(args.cache)
    prompts = [prompt_model_example(default_format("prompt_model"), t.concepts, t.level, t.rationale, t.problem)[0] for t in triples[: args.prompts]]
    # Sampling with EOS possible; every engine gets the same prompts and settings.
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=args.new_tokens, seed=0)

    batched = build_engine(EngineConfig(backend="hf", progress=False), model)
    single = build_engine(EngineConfig(backend="hf", progress=False, batch_token_budget=1), model)
    rate_b, tok_b = tokens_per_second(batched, prompts, sampling)
    rate_s, tok_s = tokens_per_second(single, prompts, sampling)
    print(f"prompts {len(prompts)}, max new tokens {args.new_tokens}, model {model.name}")
    print(f"hf batched        : {rate_b:9.1f} tokens/s ({tok_b} tokens)")
    print(f"hf one at a time  : {rate_s:9.1f} tokens/s ({tok_s} tokens)")
    print(f"ratio batched / one-at-a-time: {rate_b / rate_s:.2f}")
    try:
        vllm_engine = build_engine(EngineConfig(backend="vllm", progress=False), model)
    except ImportError as err:
        print(f"vllm              : not installed ({err})")
        return
    rate_v, tok_v = tokens_per_second(vllm_engine, prompts, sampling)
    print(f"vllm              : {rate_v:9.1f} tokens/s ({tok_v} tokens)")
    print(f"ratio vllm / hf batched: {rate_v / rate_b:.2f}")


if __name__ == "__main__":
    main()
