"""Peak RSS of stage `em` against the number of training pairs: EM's K candidates per pair are streamed to
shard files and scored shard by shard, so no process holds every candidate's token ids and the peak should stay
flat as the training set grows (within what one shard of candidates takes).

For each size the debug experiment's earlier stages (seed with `domain.n_items` items, a 1-epoch cold start) run
once in a run directory of their own, then `promptcot stage em` runs in a fresh process (every training pair each
iteration, K candidates of up to `--tokens` tokens), so the stage's accounting (`em/accounting.json`: the process's
peak RSS during the stage) is EM alone. Prints one line per size and the ratio of the largest size's peak to the
smallest's.

The stage runs with glibc's mmap threshold fixed (`MALLOC_MMAP_THRESHOLD_=65536`; `--glibc-default` leaves it
alone): by default glibc raises the threshold as large blocks are freed, and the activations of CPU forward passes
in ever new batch shapes then stay behind as heap fragmentation that grows with the number of batches — tens of MB
here, about as much as what the stage holds (measured: 0.83 GB instead of 0.69 GB at 1,920 pairs). Fixed, the peak
measures what the stage keeps. (CUDA tensors do not live on this heap.)

Run: python bench/em_memory.py [--items 300 2400] [--k 8] [--tokens 128] [--shard 64] [--glibc-default]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEBUG = REPO / "experiments/debug/tiny.yaml"


def _promptcot(*args: str, cwd: Path, malloc: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | malloc
    proc = subprocess.run([sys.executable, "-m", "promptcot_pl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"promptcot {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[300, 2400], help="domain.n_items (80%% train)")
    parser.add_argument("--k", type=int, default=8, help="em.k")
    parser.add_argument("--tokens", type=int, default=128, help="em.max_rationale_tokens")
    parser.add_argument("--shard", type=int, default=64, help="engine.shard_prompts")
    parser.add_argument("--glibc-default", action="store_true", help="leave glibc's dynamic mmap threshold on")
    args = parser.parse_args()
    malloc = {} if args.glibc_default else {"MALLOC_MMAP_THRESHOLD_": "65536"}
    work = Path(tempfile.mkdtemp(prefix="em-memory-"))
    peaks = {}
    for n in args.items:
        overrides = [f"model.cache_dir={work / 'cache'}", f"domain.n_items={n}", "coldstart.epochs=1",
                     "em.iterations=1", f"em.k={args.k}", "em.pairs_per_iteration=null", "em.heldout_limit=16",
                     f"em.max_rationale_tokens={args.tokens}", "em.eval_k=4", "em.compare_frozen=false",
                     "em.no_rationale_baseline=false", f"engine.shard_prompts={args.shard}", "tracking.enabled=false",
                     f"run_name=n{n}"]
        for stage in ("seed", "coldstart"):
            _promptcot("stage", stage, str(DEBUG), *overrides, cwd=work, malloc={})
        _promptcot("stage", "em", str(DEBUG), *overrides, cwd=work, malloc=malloc)
        stage = work / f"runs/tiny/n{n}/em"
        accounting = json.loads((stage / "accounting.json").read_text())
        pairs = sum(1 for _ in open(work / f"runs/tiny/n{n}/seed/train.jsonl"))
        peaks[n] = accounting["em/accounting/peak_rss_gb"]
        print(f"{pairs:5d} training pairs × {args.k} candidates ≤ {args.tokens} tokens: "
              f"{accounting['em/accounting/generated_tokens']:9,.0f} tokens generated, "
              f"peak RSS {peaks[n]:.3f} GB, {accounting['em/accounting/wall_s']:.1f} s", flush=True)
    small, large = min(args.items), max(args.items)
    print(f"peak RSS ratio {large} / {small} items: {peaks[large] / peaks[small]:.3f} "
          f"({large / small:.0f}× the training pairs)")


if __name__ == "__main__":
    main()
