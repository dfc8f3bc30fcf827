"""Peak RSS of stage `synth` against the number of concept sets (issue K): with streamed generation
the completions live in shard files, not in memory, so the peak should stay flat as `synth.n_concept_sets` grows.

For each N the debug experiment's earlier stages (seed, a 1-epoch cold start and solver) run once in a run
directory of their own, then `promptcot stage synth` runs in a fresh process, so the stage's accounting
(`synth/accounting.json`: the process's peak RSS during the stage) is synthesis alone. Prints one line per N and
the ratio of the largest N's peak to the smallest's.

Run: python bench/synth_memory.py [--sizes 60 240 960] [--shard 30]
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


def _promptcot(*args: str, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    subprocess.run([sys.executable, "-m", "promptcot_pl", *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 240, 960])
    parser.add_argument("--shard", type=int, default=30, help="engine.shard_prompts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synth-memory-"))
    peaks = {}
    for n in args.sizes:
        overrides = [f"model.cache_dir={work / 'cache'}", "stages=[seed,coldstart,solver,synth]", "coldstart.epochs=1",
                     "solver.epochs=1", "synth.generators=[coldstart]", f"synth.n_concept_sets={n}",
                     f"engine.shard_prompts={args.shard}", "tracking.enabled=false", f"run_name=n{n}"]
        for stage in ("seed", "coldstart", "solver"):
            _promptcot("stage", stage, str(DEBUG), *overrides, cwd=work)
        _promptcot("stage", "synth", str(DEBUG), *overrides, cwd=work)
        stage = work / f"runs/tiny/n{n}/synth"
        accounting = json.loads((stage / "accounting.json").read_text())
        funnel = json.loads((stage / "coldstart/funnel.json").read_text())["counts"]
        peaks[n] = accounting["synth/accounting/peak_rss_gb"]
        print(f"n_concept_sets {n:5d}: {funnel['generated']:5d} samples in "
              f"{len(list((stage / 'coldstart/generated').glob('shard_*.jsonl')))} shards, "
              f"peak RSS {peaks[n]:.3f} GB, {accounting['synth/accounting/wall_s']:.1f} s")
    small, large = min(args.sizes), max(args.sizes)
    print(f"peak RSS ratio n={large} / n={small}: {peaks[large] / peaks[small]:.3f} "
          f"({large / small:.0f}× the concept sets)")


if __name__ == "__main__":
    main()
