"""Self-play over seeds: held-out accuracy before and after each round, mean ± sample std across run directories,
plus the paired per-seed gain (after − before), which removes the seed-to-seed spread of the starting policy.

Reads `selfplay/history.jsonl` of finished runs, however they were launched.

Run: python -m promptcot_pl.analysis.selfplay_seeds runs/quickstart/seed0 runs/quickstart/seed1 … [--png PATH]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

from promptcot_pl.data.jsonl import iter_json_rows

ACCURACY = "selfplay/accuracy_heldout"


def load_histories(run_dirs: Sequence[Path]) -> list[list[dict]]:
    histories = []
    for run in map(Path, run_dirs):
        if not (run / "selfplay" / "DONE").is_file():
            raise FileNotFoundError(f"{run}: stage selfplay has not finished (no {run / 'selfplay' / 'DONE'})")
        histories.append([row for _, row in iter_json_rows(run / "selfplay" / "history.jsonl")])
    return histories


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def table(histories: Sequence[Sequence[dict]]) -> str:
    rounds = min(len(h) for h in histories)
    lines = [f"| round (n = {len(histories)} seeds) | held-out accuracy | gain over round 0 (paired) | pairs |",
             "|---|---|---|---|"]
    for r in range(rounds):
        acc = [h[r][ACCURACY] for h in histories]
        gain = [h[r][ACCURACY] - h[0][ACCURACY] for h in histories]
        pairs = [h[r].get("selfplay/pairs", 0.0) for h in histories]
        lines.append(f"| {r} | {statistics.fmean(acc):.4f} ± {_std(acc):.4f} | "
                     f"{statistics.fmean(gain):+.4f} ± {_std(gain):.4f} | "
                     f"{statistics.fmean(pairs):.1f} |")
    per_seed = ", ".join(f"{h[rounds - 1][ACCURACY] - h[0][ACCURACY]:+.4f}" for h in histories)
    lines.append(f"\nper-seed gain after round {rounds - 1}: {per_seed}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories with a finished selfplay stage")
    parser.add_argument("--png", type=Path, help="also plot accuracy against round (mean ± std band)")
    args = parser.parse_args(argv)
    histories = load_histories(args.runs)
    print(table(histories))
    if args.png:
        from promptcot_pl.analysis.selfplay_plot import plot_accuracy

        rounds = min(len(h) for h in histories)
        mean = [{"round": r, ACCURACY: statistics.fmean(h[r][ACCURACY] for h in histories)} for r in range(rounds)]
        spread = [_std([h[r][ACCURACY] for h in histories]) for r in range(rounds)]
        print(f"plot: {plot_accuracy(mean, args.png, spread, label=f'mean over {len(histories)} seeds')}")


if __name__ == "__main__":
    main()
