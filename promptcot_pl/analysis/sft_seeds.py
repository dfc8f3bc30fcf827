"""SFT over seeds: the student's held-out accuracy before and after SFT on each prompt source, mean ± sample std
across run directories, plus the paired per-seed difference between sources (what `experiments/sft_compare.yaml`
is about: the same student and token budget, different prompts).

Reads `sft/DONE` (the stage's metrics) of finished runs.

Run: python -m promptcot_pl.analysis.sft_seeds runs/sft_compare/seed0 runs/sft_compare/seed1 …
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path


def load_metrics(run_dirs: Sequence[Path]) -> list[dict[str, float]]:
    out = []
    for run in map(Path, run_dirs):
        done = run / "sft" / "DONE"
        if not done.is_file():
            raise FileNotFoundError(f"{run}: stage sft has not finished (no {done})")
        out.append(json.loads(done.read_text()))
    return out


def _cell(values: Sequence[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}"


def table(runs: Sequence[dict[str, float]]) -> str:
    sources = sorted({k.split("/")[1] for k in runs[0] if k.endswith("/accuracy_heldout") and k.count("/") == 2})
    lines = [f"| student (n = {len(runs)} seeds) | held-out accuracy | traces | trace tokens |", "|---|---|---|---|",
             f"| before SFT | {_cell([r['sft/accuracy_heldout_before'] for r in runs])} | – | – |"]
    for s in sources:
        lines.append(f"| after SFT on `{s}` prompts | {_cell([r[f'sft/{s}/accuracy_heldout'] for r in runs])} | "
                     f"{statistics.fmean(r[f'sft/{s}/traces'] for r in runs):.0f} | "
                     f"{statistics.fmean(r[f'sft/{s}/trace_tokens'] for r in runs):.0f} |")
    for a, b in combinations(sources, 2):
        diffs = [r[f"sft/{b}/accuracy_heldout"] - r[f"sft/{a}/accuracy_heldout"] for r in runs]
        lines.append(f"\n`{b}` − `{a}` per seed: " + ", ".join(f"{d:+.4f}" for d in diffs)
                     + f" (mean {_cell(diffs)})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories with a finished sft stage")
    print(table(load_metrics(parser.parse_args(argv).runs)))


if __name__ == "__main__":
    main()
