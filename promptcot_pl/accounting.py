"""Run accounting: what each stage cost — wall time, generated and trained tokens and their rates, peak memory,
and for synthesis the seconds per 1,000 accepted problems — logged to the stage's MLflow run as
`<stage>/accounting/*`, written to `<stage>/accounting.json` and printed in the run summary.

Counts are kept apart from a stage's results (its DONE metrics), which must not depend on the machine: a resumed
or multi-process run computes the same results in a different time. Engines add the tokens they generate
(`count_generated`), fits the tokens their training steps run over (`TokenCounter`, a Lightning callback that
`build_trainer` adds to every fit); in a multi-process run each rank counts its share and the stage sums them.
Peak memory: the process's peak RSS during the stage (Linux: the kernel's high-water mark is reset when the stage
starts, so an earlier stage's fits do not count), its finished children's (vLLM's engine processes), and the CUDA
peak.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import lightning as L
import torch

_COUNTS = {"generated": 0, "trained": 0}


def count_generated(tokens: int) -> None:
    _COUNTS["generated"] += int(tokens)


class TokenCounter(L.Callback):
    """Adds the (non-padding) tokens of every training batch to the run's trained-token count."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if "real_tokens" in batch:
            tokens = int(batch["real_tokens"])
        elif isinstance(batch.get("attention_mask"), torch.Tensor) and batch["attention_mask"].dim() == 2:
            tokens = int(batch["attention_mask"].sum())
        else:
            tokens = int(batch["input_ids"].numel())
        _COUNTS["trained"] += tokens


def reset_peak_rss() -> None:
    """Reset this process's peak-RSS mark to its current RSS (Linux); elsewhere a no-op."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:  # not Linux, or not allowed: the process's peak so far is reported
        pass


def status_kb(field: str = "VmHWM") -> int:
    """A memory field of /proc/self/status in KiB (VmHWM: peak RSS, VmRSS: now); ru_maxrss where there is none."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass
class StageMeter:
    """Started before a stage, `finish`ed after it: the stage's accounting metrics."""

    name: str

    def __post_init__(self) -> None:
        self.start, self.counts = time.perf_counter(), dict(_COUNTS)
        reset_peak_rss()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()

    def finish(self, metrics: dict[str, float]) -> dict[str, float]:
        from promptcot_pl import distributed

        wall = time.perf_counter() - self.start
        mine = [_COUNTS[k] - self.counts[k] for k in ("generated", "trained")]
        generated, trained = (sum(part) for part in zip(*distributed.gather_objects(mine)))
        peak_kb = max(status_kb("VmHWM"), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        prefix = f"{self.name}/accounting/"
        out = {"wall_s": wall, "generated_tokens": float(generated), "generated_tokens_per_s": generated / wall,
               "trained_tokens": float(trained), "trained_tokens_per_s": trained / wall,
               "peak_rss_gb": peak_kb / 2**20}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
        kept = sum(v for k, v in metrics.items() if k.startswith("synth/") and k.endswith("/kept"))
        if self.name == "synth" and kept:
            out["s_per_1000_accepted"] = wall * 1000 / kept
        return {prefix + k: float(v) for k, v in out.items()}
