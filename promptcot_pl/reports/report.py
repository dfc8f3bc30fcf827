"""`promptcot report RUN_DIR… [--metric M…] [--diff A B] [--curve M…] [--png PATH]`: finished runs compared, the
numbers a paper table needs (one verb instead of a script per stage).

Reads only what stages write in each run directory: every `<stage>/DONE` (a stage's final metrics) and every
`<stage>/history.jsonl` (per-step curves: EM iterations, self-play rounds; `em/frozen/history.jsonl` is
reported as `em_frozen/…`, its MLflow name). So it works on runs however they were launched — seeds of one
experiment, sweep trials, two machines.

- `--metric PATTERN` (fnmatch, e.g. `sft/*/accuracy_heldout`): mean ± sample std (n − 1: the seed-to-seed spread
  claims are judged against) and each run's value. Default: every final metric all runs have.
- `--diff A B`: the paired per-run difference B − A (the same seed, two variants), its mean ± std.
- `--curve PATTERN`: a per-step metric, mean ± std at each step the runs share; `--png` plots them with ±std bands.
A metric named exactly (no wildcard) that a run lacks is an error naming the run.
"""

from __future__ import annotations

import fnmatch
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from promptcot_pl.data.jsonl import iter_json_rows

STEP_KEYS = ("iteration", "round")
# history files whose metrics are logged under another prefix (stage em's frozen-rationale variant)
RENAMED_HISTORIES = {"em/frozen/history.jsonl": ("em/", "em_frozen/")}


@dataclass
class Run:
    path: Path
    final: dict[str, float] = field(default_factory=dict)
    curves: dict[str, dict[int, float]] = field(default_factory=dict)  # metric → step → value

    @classmethod
    def read(cls, path: str | Path) -> Run:
        run = cls(Path(path))
        if not run.path.is_dir():
            raise FileNotFoundError(f"{run.path}: no such run directory")
        for done in sorted(run.path.glob("*/DONE")):
            text = done.read_text().strip()
            run.final.update({k: float(v) for k, v in (json.loads(text) if text else {}).items()
                              if isinstance(v, (int, float))})
        histories = sorted(run.path.glob("*/history.jsonl")) + sorted(run.path.glob("*/*/history.jsonl"))
        for history in histories:
            old, new = RENAMED_HISTORIES.get(history.relative_to(run.path).as_posix(), ("", ""))
            for _, row in iter_json_rows(history):
                step = next((int(row[k]) for k in STEP_KEYS if k in row), None)
                if step is None:
                    continue
                for key, value in row.items():
                    if key not in STEP_KEYS and isinstance(value, (int, float)):
                        name = key.replace(old, new, 1) if old else key
                        run.curves.setdefault(name, {})[step] = float(value)
        if not run.final and not run.curves:
            raise FileNotFoundError(f"{run.path}: no finished stage (no <stage>/DONE)")
        return run


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f}"


def _select(patterns: Sequence[str], runs: Sequence[Run], attr: str) -> list[str]:
    """The metric names `patterns` pick that every run has; an exact name a run lacks is an error."""
    names: list[str] = []
    for pattern in patterns:
        if not any(ch in pattern for ch in "*?["):
            for run in runs:
                if pattern not in getattr(run, attr):
                    kind = "final metric (<stage>/DONE)" if attr == "final" else "curve (<stage>/history.jsonl)"
                    raise KeyError(f"{run.path}: no {kind} {pattern!r}")
            names.append(pattern)
            continue
        common = set.intersection(*(set(getattr(run, attr)) for run in runs))
        hits = sorted(n for n in common if fnmatch.fnmatchcase(n, pattern))
        if not hits:
            raise KeyError(f"no {'final metric' if attr == 'final' else 'curve'} that every run has matches {pattern!r}")
        names += [n for n in hits if n not in names]
    return names


def report(runs: Sequence[Run], metrics: Sequence[str] = (), diffs: Sequence[tuple[str, str]] = (),
           curves: Sequence[str] = ()) -> tuple[str, dict]:
    """(markdown, the same numbers as a dict)."""
    out: dict = {"runs": [str(r.path) for r in runs], "metrics": {}, "diffs": {}, "curves": {}}
    lines = [f"{len(runs)} runs: " + ", ".join(str(r.path) for r in runs), ""]
    names = _select(metrics or ["*"], runs, "final") if (metrics or not (diffs or curves)) else []
    if names:
        lines += ["| metric | mean ± std | " + " | ".join(r.path.name for r in runs) + " |",
                  "|---|---|" + "---|" * len(runs)]
        for name in names:
            values = [r.final[name] for r in runs]
            lines.append(f"| `{name}` | {_cell(values)} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
            out["metrics"][name] = dict(zip(("mean", "std"), mean_std(values)), values=values)
    for a, b in diffs:
        _select([a, b], runs, "final")
        d = [r.final[b] - r.final[a] for r in runs]
        lines.append(f"\n`{b}` − `{a}`, paired per run: " + ", ".join(f"{x:+.4f}" for x in d) + f" (mean {_cell(d)})")
        out["diffs"][f"{b} - {a}"] = dict(zip(("mean", "std"), mean_std(d)), values=d)
    for name in _select(curves, runs, "curves") if curves else []:
        steps = sorted(set.intersection(*(set(r.curves[name]) for r in runs)))
        lines += ["", f"| step | `{name}` mean ± std |", "|---|---|"]
        lines += [f"| {s} | {_cell([r.curves[name][s] for r in runs])} |" for s in steps]
        out["curves"][name] = {str(s): dict(zip(("mean", "std"), mean_std([r.curves[name][s] for r in runs])))
                               for s in steps}
    return "\n".join(lines), out


def plot(curves: dict, path: str | Path, n_runs: int) -> Path:
    """One panel per curve: the mean over runs against step, with a ±std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (name, points) in zip(axes[0], curves.items()):
        xs = [int(s) for s in points]
        ys, sd = [p["mean"] for p in points.values()], [p["std"] for p in points.values()]
        ax.plot(xs, ys, marker="o", label=f"mean over {n_runs} runs")
        ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step (EM iteration / self-play round)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
