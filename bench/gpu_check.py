"""GPU check (the body of bench/gpu_check.sh): what a user should see on a fresh GPU machine, in under 8 minutes on
one GPU, through the code paths the pipeline runs — no hand-made batches. Prints one table with the date.

1. **Paper-shaped fit step.** A randomly initialised Qwen2-style model of ~0.5B parameters (Qwen2.5-0.5B's shape,
   151,936-token vocabulary) fitted by `WeightedNLLModule` under `build_trainer` with FSDP, bf16-mixed (fp32
   buffers and gradient reduce: `promptcot_pl/precision.py`) and activation checkpointing, on packed rows of
   `--seq` tokens from the real `PairDataModule` and collate. Tokens/s, model FLOPs utilisation (6·params·tokens/s
   over the chip's dense bf16 peak), peak memory, and RoPE's `inv_freq` dtype after the steps.
2. **Engine refresh after a fit.** The engine (`--engine`: vLLM on a GPU where it is installed, else HF) serves the tiny model, sleeps
   during a fit of it, is refreshed with the fitted weights and must answer a probe greedily exactly as HF does
   on those weights.
3. **The whole pipeline.** `promptcot run experiments/debug/tiny.yaml` with that engine:
   every stage, engines asleep during fits, the new weights served after each fit; each stage's wall time from
   its `accounting.json`.

`--smoke` runs all of it on CPU with a small model in about a minute (tests/test_scale_out.py runs it, so the
script cannot rot on machines without a GPU).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}  # dense, per chip
PARTS = ("fit", "refresh", "pipeline")
BUDGET_S = {"fit": 150, "refresh": 100, "pipeline": 220}  # per part on a GPU: 470 s, within gpu_check.sh's 480


def report(what: str, value: str) -> None:
    """A row of the table: printed by the part that measured it, collected by `main`."""
    print(f"ROW\t{what}\t{value}", flush=True)


def qwen2_config(smoke: bool, vocab: int):
    from transformers import Qwen2Config

    if smoke:
        return Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)
    return Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1e6, tie_word_embeddings=False)


def training_pairs(n: int) -> tuple[object, list[tuple[str, str]]]:
    """A tokenizer trained offline on arithmetic word problems, and (prompt, worked solution) pairs of them."""
    from promptcot_pl.domains import build_domain
    from promptcot_pl.models.tokenizer_styles import train_tokenizer

    triples = build_domain("arithmetic", n, seed=0)
    pairs = [(f"Problem:\n{t.problem}\nSolution:\n", t.solution) for t in triples]
    return train_tokenizer([p + s for p, s in pairs], 1024, split_digits=True), pairs


def fit_step(args, device: torch.device) -> None:
    import lightning as L
    from transformers import Qwen2ForCausalLM

    from promptcot_pl.config import OptimConfig, TrainerConfig
    from promptcot_pl.modules import WeightedNLLModule
    from promptcot_pl.modules.data import PairDataModule
    from promptcot_pl.trainer import build_trainer

    tokenizer, pairs = training_pairs(2000 if args.smoke else 6000)
    data = PairDataModule(tokenizer, pairs, pairs[:8], batch_size=args.batch, max_length=args.seq, packing=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(qwen2_config(args.smoke, len(tokenizer)))
    params = sum(p.numel() for p in model.parameters())
    times: list[float] = []
    seen: dict[str, str] = {}

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())

        def on_train_batch_end(self, trainer, module, *rest):
            (inv_freq,) = [b for name, b in module.named_buffers() if name.endswith("rotary_emb.inv_freq")]
            seen["inv_freq"] = str(inv_freq.dtype).removeprefix("torch.")

    cfg = TrainerConfig(strategy="fsdp", precision="bf16-mixed", activation_checkpointing=True,
                        enable_progress_bar=False, devices="1", log_every_n_steps=1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = build_trainer(cfg, max_epochs=None, max_steps=args.warmup + args.steps,
                            default_root_dir=tempfile.mkdtemp(), callbacks=[Clock()])
    trainer.fit(WeightedNLLModule(model, OptimConfig(lr=1e-5, scheduler="constant", warmup_ratio=0.0)),
                datamodule=data)
    if device.type == "cuda":
        torch.cuda.synchronize()
    times.append(time.perf_counter())
    timed = times[args.warmup:]
    tokens_s = args.batch * args.seq * (len(timed) - 1) / (timed[-1] - timed[0])
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    report("fit step", f"{params / 1e6:.1f}M params, FSDP bf16-mixed, packed rows {args.batch} × {args.seq} "
                       f"(padding {trainer.callback_metrics['train/padding_waste']:.1%})")
    report("fit tokens/s", f"{tokens_s:,.0f}")
    # 6·N per token, N with the embeddings, attention's own FLOPs left out: a lower bound at long rows
    report("fit MFU (6·N·tokens/s)", f"{6 * params * tokens_s / peak:.1%}" if peak else "n/a (unknown peak)")
    if device.type == "cuda":
        report("fit peak memory", f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    report("RoPE inv_freq after the steps", seen["inv_freq"])
    if seen["inv_freq"] != "float32":
        raise SystemExit("FSDP bf16-mixed rounded RoPE's frequencies to bf16")


def engine_refresh(args, work: Path) -> None:
    """The engine serves the tiny model, sleeps during a fit, then serves the fitted weights exactly."""
    import lightning as L

    from promptcot_pl.config import EngineConfig, OptimConfig, SamplingConfig, TinyModelConfig, TrainerConfig
    from promptcot_pl.generation import build_engine
    from promptcot_pl.models import load_model, load_tokenizer, tiny_model_dir
    from promptcot_pl.modules import WeightedNLLModule
    from promptcot_pl.modules.data import PairDataModule
    from promptcot_pl.runner.fit import export_trained
    from promptcot_pl.trainer import build_trainer

    _, pairs = training_pairs(400)
    base = tiny_model_dir(TinyModelConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=2,
                                          intermediate_size=128), [p + s for p, s in pairs], work / "cache", 0)
    backend = args.engine
    dtype = "float32" if args.smoke else "bfloat16"
    engine_cfg = EngineConfig(backend=backend, progress=False, enforce_eager=True, gpu_memory_utilization=0.3)
    engine = build_engine(engine_cfg, base, dtype=dtype)
    greedy = SamplingConfig(temperature=0, max_new_tokens=32)
    probe = [pairs[0][0], pairs[1][0]]
    before = [g[0].token_ids for g in engine.generate(probe, greedy)]
    how = engine.sleep()
    data = PairDataModule(load_tokenizer(base), pairs, pairs[:8], batch_size=16, max_length=512)
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False), max_epochs=1, default_root_dir=work / "fit")
    L.seed_everything(0, verbose=False)
    trainer.fit(WeightedNLLModule(load_model(base), OptimConfig(lr=3e-3, warmup_ratio=0.1)), datamodule=data)
    fitted = export_trained(trainer, load_tokenizer(base), work / "fitted", dtype)
    start = time.perf_counter()
    engine.refresh(fitted)
    after = [g[0].token_ids for g in engine.generate(probe, greedy)]
    woke = time.perf_counter() - start
    engine.close()
    # the reference: a fresh engine of the same kind on the fitted weights (HF and vLLM kernels may break a bf16
    # greedy tie differently, so on a GPU the refreshed vLLM engine is compared with a fresh vLLM engine)
    fresh = build_engine(engine_cfg, fitted, dtype=dtype)
    expected = [g[0].token_ids for g in fresh.generate(probe, greedy)]
    fresh.close()
    same = after == expected
    report("engine refresh after a fit", f"{backend}: asleep during the fit ({how}); woke with the fitted weights in "
                                         f"{woke:.1f} s; greedy = a fresh engine on them: {same}; changed: "
                                         f"{after != before}")
    if not same:
        raise SystemExit("the engine did not serve the fitted weights")


def pipeline(args, work: Path) -> None:
    overrides = [f"model.cache_dir={work / 'cache'}", "tracking.enabled=false", f"engine.backend={args.engine}"]
    if not args.smoke:
        overrides += ["engine.enforce_eager=true", "engine.gpu_memory_utilization=0.3", "model.dtype=bfloat16",
                      "trainer.precision=bf16-mixed"]
    overrides += args.set
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "promptcot_pl", "run", str(REPO / "experiments/debug/tiny.yaml"),
                           *overrides], cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the pipeline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    run = work / "runs/tiny/main"
    stages = [s for s in ("seed", "coldstart", "em", "solver", "synth", "analyze", "sft", "selfplay")
              if (run / s / "DONE").is_file()]
    lines = proc.stdout.splitlines() + proc.stderr.splitlines()
    asleep = sum("engine asleep during" in line for line in lines)
    rebuilt = any("rebuilt on every refresh" in line for line in lines)  # an in-place weight load failed
    report("pipeline", f"{len(stages)} stages in {wall:.0f} s ({'vLLM' if args.engine == 'vllm' else 'HF'} engine), "
                       f"{asleep} fits and scoring passes with the engine asleep, new weights loaded "
                       f"{'by rebuilding the engine (in-place load failed)' if rebuilt else 'in place'}")
    for stage in stages:
        accounting = json.loads((run / stage / "accounting.json").read_text())
        report(f"  {stage}", f"{accounting[f'{stage}/accounting/wall_s']:.1f} s"
                             + (f", peak GPU {accounting[f'{stage}/accounting/peak_gpu_gb']:.1f} GiB"
                                if f"{stage}/accounting/peak_gpu_gb" in accounting else ""))


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a small model on CPU, about a minute (tests)")
    parser.add_argument("--batch", type=int, default=8, help="packed rows per step")
    parser.add_argument("--seq", type=int, default=4096, help="tokens per packed row")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--engine", choices=("vllm", "hf"),
                        help="the generation engine of parts 2 and 3 (default: vllm on a GPU where it is installed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for the pipeline's run, e.g. synth.embedding_model=/path (repeatable)")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # one part, in a process of its own
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.seq, args.steps, args.warmup = 2, 256, 3, 1
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.engine is None:
        args.engine = "vllm" if device.type == "cuda" and importlib.util.find_spec("vllm") else "hf"
    if args.part:
        work = Path(args.work)
        {"fit": lambda: fit_step(args, device), "refresh": lambda: engine_refresh(args, work),
         "pipeline": lambda: pipeline(args, work)}[args.part]()
        return
    # each part in a process of its own: the fit's process group and memory are gone before an engine starts
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke)"
    rows = [("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
            ("device", f"{name}; torch {torch.__version__}; engine {args.engine}")]
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    failed = []
    print("| check | result |\n|---|---|", flush=True)  # rows as each part ends: a timeout keeps what was measured
    for what, value in rows:
        print(f"| {what} | {value} |", flush=True)
    for part in args.parts:
        start = time.perf_counter()
        command = [sys.executable, __file__, "--part", part, "--work", str(work), "--batch", str(args.batch),
                   "--seq", str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--engine", args.engine, *(f"--set={kv}" for kv in args.set)]
        try:
            proc = subprocess.run(command + (["--smoke"] if args.smoke else []), capture_output=True, text=True,
                                  timeout=None if args.smoke else BUDGET_S[part])
            out, err, ok = proc.stdout, proc.stderr, proc.returncode == 0
        except subprocess.TimeoutExpired as late:
            out, err, ok = _text(late.stdout), _text(late.stderr) + f"\n(over its {BUDGET_S[part]} s budget)", False
        for line in out.splitlines():
            if line.startswith("ROW\t"):
                _, what, value = line.split("\t", 2)
                print(f"| {what.strip()} | {value} |", flush=True)
        print(f"| {part} wall time | {time.perf_counter() - start:.0f} s{'' if ok else ' (FAILED)'} |", flush=True)
        if not ok:
            failed.append(part)
            print(f"--- part {part} failed:\n{out[-3000:]}\n{err[-3000:]}", file=sys.stderr, flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
