"""GPU check (the body of bench/gpu_check.sh): what a user should see on a fresh GPU machine in under 4 minutes.

1. An FSDP bf16 training step of a randomly initialised Qwen2-style model of ~0.5B parameters (Qwen2.5-0.5B's
   shape) through `build_trainer` exactly as the pipeline builds it (auto-wrapped decoder layers, activation
   checkpointing, bf16 mixed precision): tokens/s and model FLOPs utilisation (6·params·tokens/s over the chip's
   dense bf16 peak).
2. HF `generate` on the same model: generated tokens/s (greedy, batch 32, 128 new tokens).
3. The vLLM engine on the same weights when vLLM is installed: generated tokens/s on the same request.

`--smoke` runs the same code on CPU with a small model in seconds (used by the tests, so the script cannot rot
on machines without a GPU).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}  # dense, per chip


def qwen2_config(smoke: bool):
    from transformers import Qwen2Config

    if smoke:
        return Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    return Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                       tie_word_embeddings=False)


def train(model, args) -> tuple[float, int]:
    """(tokens/s over the timed steps, parameters)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from promptcot_pl.config import OptimConfig, TrainerConfig
    from promptcot_pl.modules import WeightedNLLModule
    from promptcot_pl.trainer import build_trainer

    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(0, model.config.vocab_size, (args.seq,), generator=g) for _ in range(args.batch)]
    batch = {"input_ids": torch.stack(rows), "labels": torch.stack(rows),
             "attention_mask": torch.ones(args.batch, args.seq, dtype=torch.long)}
    loader = DataLoader([batch] * (args.warmup + args.steps), batch_size=None)
    times: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    cfg = TrainerConfig(strategy="fsdp", precision="32-true" if args.smoke else "bf16-mixed",
                        activation_checkpointing=True, enable_progress_bar=False, devices="1")
    trainer = build_trainer(cfg, max_epochs=1, default_root_dir=tempfile.mkdtemp(), callbacks=[Clock()])
    trainer.fit(WeightedNLLModule(model, OptimConfig(lr=1e-5, scheduler="constant", warmup_ratio=0.0)), loader)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    times.append(time.perf_counter())
    timed = times[args.warmup:]
    return args.batch * args.seq * (len(timed) - 1) / (timed[-1] - timed[0]), params


def hf_generate(model, args, device) -> float:
    model = model.to(device=device, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32).eval()
    ids = torch.randint(0, model.config.vocab_size, (args.gen_batch, 64), generator=torch.Generator().manual_seed(1))
    options = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                   pad_token_id=0, eos_token_id=None)
    with torch.inference_mode():
        model.generate(input_ids=ids[:2].to(device), **{**options, "max_new_tokens": 8, "min_new_tokens": 8})
        start = time.perf_counter()
        out = model.generate(input_ids=ids.to(device), **options)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (out.shape[1] - ids.shape[1]) * ids.shape[0] / (time.perf_counter() - start)


def vllm_generate(model, args) -> float | None:
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        return None
    path = tempfile.mkdtemp()
    model.save_pretrained(path)
    llm = LLM(model=path, skip_tokenizer_init=True, dtype="bfloat16" if torch.cuda.is_available() else "float32",
              gpu_memory_utilization=0.5, enforce_eager=args.smoke)
    g = torch.Generator().manual_seed(1)
    prompts = [{"prompt_token_ids": torch.randint(0, model.config.vocab_size, (64,), generator=g).tolist()}
               for _ in range(args.gen_batch)]
    params = SamplingParams(max_tokens=args.new_tokens, ignore_eos=True, temperature=0.0, detokenize=False)
    llm.generate(prompts[:2], params, use_tqdm=False)
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outputs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a small model on CPU, seconds (tests)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gen-batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--no-vllm", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.seq, args.steps, args.warmup, args.gen_batch, args.new_tokens = 2, 64, 3, 1, 4, 8
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = qwen2_config(args.smoke)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}", flush=True)

    tokens_s, params = train(Qwen2ForCausalLM(cfg), args)
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    mfu = f"{6 * params * tokens_s / peak:.1%}" if peak else "n/a (unknown peak)"
    label = "fp32 (smoke, CPU)" if args.smoke else "bf16"
    print(f"FSDP {label} train step, {params / 1e6:.0f}M params, batch {args.batch} × {args.seq}: "
          f"{tokens_s:,.0f} tokens/s, MFU {mfu}", flush=True)
    model = Qwen2ForCausalLM(cfg)
    print(f"HF generate, batch {args.gen_batch}, {args.new_tokens} new tokens: "
          f"{hf_generate(model, args, device):,.0f} tokens/s", flush=True)
    rate = None if args.no_vllm else vllm_generate(model.float().cpu(), args)
    print(f"vLLM generate, same request: {'not installed' if rate is None else f'{rate:,.0f} tokens/s'}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
