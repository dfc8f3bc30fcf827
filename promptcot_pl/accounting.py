"""Run accounting: what each stage cost — wall time, generated and trained tokens and their rates, peak memory,
and for synthesis the seconds per 1,000 accepted problems — logged to the stage's MLflow run as
`<stage>/accounting/*`, written to `<stage>/accounting.json` and printed in the run summary.

Counts are kept apart from a stage's results (its DONE metrics), which must not depend on the machine: a resumed
or multi-process run computes the same results in a different time. Engines add the tokens they generate
(`count_generated`), fits the tokens their training steps run over (`TokenAccounting`, a Lightning callback that
`build_trainer` adds to every fit); in a multi-process run each rank counts its share and the stage sums them.
Peak memory: the process's peak RSS during the stage (Linux: the kernel's high-water mark is reset when the stage
starts, so an earlier stage's fits do not count), its finished children's (vLLM's engine processes), and the CUDA
peak.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from promptcot_pl.distributed import all_reduce_sum

_COUNTS = {"generated": 0, "trained": 0}


def count_generated(tokens: int) -> None:
    _COUNTS["generated"] += int(tokens)


class TokenAccounting(L.Callback):
    """The one count of a fit's tokens (`build_trainer` adds it to every fit): real (non-padding) tokens and token
    positions of every training batch, kept on the batch's device and read once, at the fit's end — no host sync
    per step. Per step it logs `train/padding_waste` (the share of the global batch's positions that hold padding:
    the two counts summed over the ranks, so every rank logs the same exact value) for batches that say how many of
    their tokens are real (`real_tokens`: padded and packed rows). The fit's totals are callback state, so they
    travel in its checkpoints and a killed and resumed fit reports the whole fit
    (tests/test_trainer_resume.py::test_a_killed_packed_fit_reports_the_whole_fits_padding_waste). At the fit's
    end this rank's real tokens go to the run's trained-token count."""

    def __init__(self) -> None:
        self.fit_total = torch.zeros(2, dtype=torch.long)  # (real, positions) over every rank, the whole fit
        self.mine = torch.zeros((), dtype=torch.long)  # this process's real tokens since it started the fit

    @property
    def padding_waste(self) -> float:
        real, positions = self.fit_total.tolist()
        return 1.0 - real / positions if positions else 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_total = self.fit_total.to(pl_module.device)
        self.mine = torch.zeros((), dtype=torch.long, device=pl_module.device)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        ids = batch["input_ids"]
        if "real_tokens" in batch:
            real = batch["real_tokens"]
        elif isinstance(batch.get("attention_mask"), torch.Tensor) and batch["attention_mask"].dim() == 2:
            real = batch["attention_mask"].sum()
        else:
            real = torch.tensor(ids.numel(), device=ids.device)
        self.mine = self.mine + real.long()
        if "real_tokens" not in batch:
            return
        counts = torch.stack([real.float(), torch.tensor(float(ids.numel()), device=ids.device)])
        real_all, positions_all = all_reduce_sum(counts)  # 2 numbers, queued on the device: no host sync
        self.fit_total = self.fit_total + torch.stack([real_all, positions_all]).round().long()
        pl_module.log("train/padding_waste", 1.0 - real_all / positions_all, batch_size=1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _COUNTS["trained"] += int(self.mine)  # the one host read of the fit

    def state_dict(self) -> dict[str, Any]:
        return {"fit_total": self.fit_total.tolist()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fit_total = torch.tensor(state_dict["fit_total"], dtype=torch.long)


def padding_waste(trainer: L.Trainer) -> float:
    """The share of padding among the token positions of a finished fit's training batches (0 when unknown)."""
    callbacks = trainer.callbacks  # type: ignore[attr-defined]  # a Trainer property lightning's stubs miss
    return next((c.padding_waste for c in callbacks if isinstance(c, TokenAccounting)), 0.0)


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
