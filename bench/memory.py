"""Peak memory and speed of the log-prob paths at Qwen's 151,936-token vocabulary (issue K): ours
(`models/head.py`: the LM head and log-softmax on target positions only, in chunks) against the naive path (the
model's full `[tokens, vocabulary]` logits, then a log-softmax / cross-entropy over them), on three workloads:

- scoring:  E-step scoring of K = 8 rationale candidates per prompt, prefix-shared rows, no grad;
- sft:      one SFT step (forward, backward, AdamW step) on right-padded (prompt, target) rows;
- dpo:      one DPO step on prefix-shared (prompt, chosen, rejected) rows, reference log-probs given.

Each (workload, path) runs in a fresh subprocess: it builds the model, batch and optimizer (its states
allocated), resets the kernel's peak-RSS mark (`/proc/self/clear_refs`), runs one step and reads the peak
(`VmHWM`) above the RSS it started the step with — the memory the step itself needs; weights and optimizer states
are the same for both paths and left out. Then it times `--repeats` more steps for tokens/s (target tokens per
second). The model is a Llama-shaped decoder with a small hidden size (so it runs on CPU) and an untied 151,936 ×
hidden LM head: the head and the logits dominate, as they do at 7B with long sequences.

Run: python bench/memory.py [--hidden 64] [--repeats 3]
Prints one line per workload and, last, `min peak-memory ratio naive/ours: X`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VOCAB = 151_936
GOALS = {"scoring": 4.0, "sft": 4.0, "dpo": 2.0}  # issue K: lower peak memory by at least this factor


def _model(hidden: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=False, attn_implementation="sdpa")
    return LlamaForCausalLM(config)


def _ids(n: int, seed: int) -> list[int]:
    import torch

    return torch.randint(10, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _scoring_batch(args):
    from promptcot_pl.data.shared_prefix import SharedPrefix, shared_prefix_batch

    rows = [SharedPrefix(_ids(args.prompt, p), [_ids(args.target, 100 * p + k) for k in range(8)], list(range(8 * p, 8 * p + 8)))
            for p in range(args.pairs)]
    return shared_prefix_batch(rows, pad_id=0)


def _sft_batch(args):
    from promptcot_pl.data.collate import IGNORE, Encoded, pad_batch

    rows = []
    for r in range(args.rows):
        ids = _ids(args.prompt + args.target - 16 * r, r)  # rows of different lengths: padding, as in a real batch
        rows.append(Encoded(ids, [IGNORE] * args.prompt + ids[args.prompt:]))
    return pad_batch(rows, pad_id=0)


def _dpo_batch(args):
    import torch

    from promptcot_pl.data.shared_prefix import SharedPrefix, shared_prefix_batch

    rows = [SharedPrefix(_ids(args.prompt, r), [_ids(args.target, 10 * r), _ids(args.target - 32, 10 * r + 1)], [2 * r, 2 * r + 1])
            for r in range(args.rows)]
    batch = shared_prefix_batch(rows, pad_id=0)
    batch["ref_chosen"] = torch.full((args.rows,), -3000.0)
    batch["ref_rejected"] = torch.full((args.rows,), -3000.0)
    return batch


def _step(workload: str, path: str, model, batch, optimizer):
    """One step; returns the number of target tokens it scored or trained on."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ is a package
    from promptcot_pl.losses.dpo import dpo_loss
    from promptcot_pl.modules import SequenceScorer, WeightedNLLModule
    from promptcot_pl.stages.selfplay.config import DPOConfig
    from promptcot_pl.stages.selfplay.module import pair_logprobs
    from tests.reference import gathered_sequence_logprobs, masked_nll  # the naive full-logit path

    def full_logits():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     position_ids=batch.get("position_ids"), use_cache=False).logits

    if workload == "scoring":
        with torch.no_grad():
            if path == "ours":
                SequenceScorer(model).predict_step(batch, 0)
            else:
                gathered_sequence_logprobs(full_logits(), batch["score_row"], batch["score_pos"], batch["score_label"],
                                           batch["score_owner"], len(batch["index"]))
        return len(batch["score_label"])
    if workload == "sft":
        if path == "ours":
            total, n = WeightedNLLModule(model, None).forward(batch)
            loss = total / n
        else:
            loss, n = masked_nll(full_logits(), batch["labels"])
    else:
        if path == "ours":
            sums = pair_logprobs(model, batch)
        else:
            s, c = gathered_sequence_logprobs(full_logits(), batch["score_row"], batch["score_pos"],
                                              batch["score_label"], batch["score_owner"], len(batch["index"]))
            sums = (s[0::2], s[1::2], c[0::2], c[1::2])
        loss = dpo_loss(sums[0], sums[1], batch["ref_chosen"], batch["ref_rejected"], beta=DPOConfig().beta).losses.mean()
        n = len(batch["score_label"])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)
    return int(n)


def measure(workload: str, path: str, args) -> dict:
    """Runs in the subprocess: {peak_mib, tokens_per_s}."""
    import torch

    torch.set_num_threads(args.threads)
    model = _model(args.hidden)
    batch = {"scoring": _scoring_batch, "sft": _sft_batch, "dpo": _dpo_batch}[workload](args)
    optimizer = None
    if workload != "scoring":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
        for p in model.parameters():  # allocate grads and AdamW states before the measured step
            p.grad = torch.zeros_like(p)
        optimizer.step()
    else:
        model.eval()
    from promptcot_pl.accounting import reset_peak_rss, status_kb

    reset_peak_rss()  # VmHWM := the current RSS
    start_kib = status_kb("VmRSS")
    _step(workload, path, model, batch, optimizer)
    peak_mib = (status_kb("VmHWM") - start_kib) / 1024
    tokens, start = 0, time.perf_counter()
    for _ in range(args.repeats):
        tokens += _step(workload, path, model, batch, optimizer)
    return {"peak_mib": peak_mib, "tokens_per_s": tokens / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    parser.add_argument("--target", type=int, default=384, help="tokens per target / completion")
    parser.add_argument("--pairs", type=int, default=1, help="scoring: (c, x) pairs of K = 8 candidates")
    parser.add_argument("--rows", type=int, default=4, help="sft / dpo: rows per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after the measured one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args)))
        return
    passthrough = [a for a in sys.argv[1:]]
    ratios = []
    print(f"vocabulary {VOCAB:,}, hidden {args.hidden}, prompt {args.prompt} + target {args.target} tokens; "
          f"peak = memory one step adds (MiB), measured in a fresh process")
    for workload in GOALS:
        result = {}
        for path in ("naive", "ours"):
            out = subprocess.run([sys.executable, __file__, *passthrough, "--child", workload, path],
                                 check=True, capture_output=True, text=True).stdout
            result[path] = json.loads(out.strip().splitlines()[-1])
        ratio = result["naive"]["peak_mib"] / max(result["ours"]["peak_mib"], 1e-9)
        speed = result["ours"]["tokens_per_s"] / result["naive"]["tokens_per_s"]
        ratios.append(ratio)
        print(f"{workload:8s} peak naive {result['naive']['peak_mib']:8.1f} MiB, ours {result['ours']['peak_mib']:7.1f} "
              f"MiB, ratio {ratio:5.2f} (goal ≥ {GOALS[workload]:.0f}); tokens/s naive "
              f"{result['naive']['tokens_per_s']:7.0f}, ours {result['ours']['tokens_per_s']:7.0f}, "
              f"ratio {speed:4.2f} (goal ≥ 0.9)")
    print(f"min peak-memory ratio naive/ours: {min(ratios):.2f}")


if __name__ == "__main__":
    main()
