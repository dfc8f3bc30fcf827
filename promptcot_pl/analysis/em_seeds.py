"""The EM analysis over seeds: EM vs `e_step=false` vs the no-rationale baseline, mean ± std across run directories.

Reads what stage `em` wrote (`em/history.jsonl`, `em/frozen/history.jsonl` when `em.compare_frozen`,
`em/baseline/metrics.json`), so it works on any finished runs, however they were launched. Standard deviations are
sample standard deviations (n − 1), the seed-to-seed spread the paper's claims are judged against.

Run: python -m promptcot_pl.analysis.em_seeds runs/em_ablation/seed0 runs/em_ablation/seed1 … [--png PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from promptcot_pl.data.jsonl import iter_json_rows

METRICS = ("em/iwae_heldout", "em/elbo_heldout", "em/nll_x_given_z_heldout")
VARIANTS = {"EM": "em/history.jsonl", "EM without E-step": "em/frozen/history.jsonl"}
BASELINE = "em/nll_x_no_rationale_heldout"


def _rows(path: Path) -> list[dict]:
    return [row for _, row in iter_json_rows(path)]


def load_runs(run_dirs: Sequence[Path]) -> tuple[dict[str, list[list[dict]]], list[float]]:
    """(variant → one history per run, baseline NLLs). A variant missing from any run is left out entirely, so
    every mean is over the same seeds."""
    histories = {name: [] for name in VARIANTS}
    baselines = []
    for run in map(Path, run_dirs):
        if not (run / "em" / "DONE").is_file():
            raise FileNotFoundError(f"{run}: stage em has not finished (no {run / 'em' / 'DONE'})")
        for name, rel in VARIANTS.items():
            if (run / rel).is_file():
                histories[name].append(_rows(run / rel))
        baseline = run / "em" / "baseline" / "metrics.json"
        if baseline.is_file():
            baselines.append(json.loads(baseline.read_text())[BASELINE])
    histories = {k: v for k, v in histories.items() if len(v) == len(run_dirs)}
    return histories, baselines if len(baselines) == len(run_dirs) else []


def mean_std(runs: Sequence[Sequence[Mapping[str, float]]]) -> tuple[list[dict], list[dict]]:
    """Per-iteration mean and sample std of every metric over runs (rows aligned by "iteration")."""
    iterations = sorted(set.intersection(*({r["iteration"] for r in rows} for rows in runs)))
    means, stds = [], []
    for it in iterations:
        at = [next(r for r in rows if r["iteration"] == it) for rows in runs]
        keys = [k for k in at[0] if k != "iteration" and all(k in r for r in at)]
        means.append({"iteration": it, **{k: statistics.fmean(r[k] for r in at) for k in keys}})
        stds.append({"iteration": it, **{k: _std([r[k] for r in at]) for k in keys}})
    return means, stds


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def table(histories: Mapping[str, list[list[dict]]], baselines: Sequence[float]) -> str:
    """A markdown table: one row per variant and point (cold start, after the last iteration), mean ± std."""
    n = len(next(iter(histories.values()))) if histories else len(baselines)
    lines = [f"| variant (n = {n} seeds) | " + " | ".join(f"`{m}`" for m in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for name, runs in histories.items():
        means, stds = mean_std(runs)
        points = [("cold start", means[0], stds[0])] if name == "EM" else []
        points.append((f"after iteration {means[-1]['iteration']}", means[-1], stds[-1]))
        for label, mean, std in points:
            cells = [f"{mean[m]:.4f} ± {std[m]:.4f}" if m.startswith("em/nll") else f"{mean[m]:.2f} ± {std[m]:.2f}"
                     for m in METRICS]
            lines.append(f"| {name}, {label} | " + " | ".join(cells) + " |")
    if baselines:
        cell = f"{statistics.fmean(baselines):.4f} ± {_std(baselines):.4f}"
        lines.append("| no rationale (p_θ on c → x) | – | – | " + cell + " |")
    if len(histories) == 2:
        (a, runs_a), (b, runs_b) = histories.items()
        diffs = {m: [ra[-1][m] - rb[-1][m] for ra, rb in zip(runs_a, runs_b)] for m in METRICS}
        cells = [f"{statistics.fmean(d):+.4f} ± {_std(d):.4f}" if m.startswith("em/nll") else
                 f"{statistics.fmean(d):+.2f} ± {_std(d):.2f}" for m, d in diffs.items()]
        lines.append(f"| {a} − {b}, paired per seed | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each with a finished em stage)")
    parser.add_argument("--png", type=Path, help="also plot mean ± std against iteration to this file")
    args = parser.parse_args(argv)
    try:
        histories, baselines = load_runs(args.runs)
    except FileNotFoundError as err:
        parser.exit(2, f"em_seeds: {err}\n")
    print(table(histories, baselines))
    if args.png:
        from promptcot_pl.analysis.em_plot import plot_history

        stats = {name: mean_std(runs) for name, runs in histories.items()}
        plot_history({k: m for k, (m, _) in stats.items()}, args.png,
                     baseline=statistics.fmean(baselines) if baselines else None,
                     spread={k: s for k, (_, s) in stats.items()})
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
