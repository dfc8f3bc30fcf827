"""95% confidence intervals for held-out accuracy and for the difference between two evaluations of the same
problems, by a bootstrap over problems (the cluster bootstrap): problems are resampled with replacement, each with
all of its samples. A problem's samples are not drawn anew inside it: its observed mean already carries their
noise, and drawing them again would count that noise twice (the interval ~1.2× too wide when problems differ
little — tests/test_confidence.py pins the width against the analytic standard error). A difference is paired:
both evaluations are resampled on the same draw of problems, so what the problems have in common cancels. numpy
does the work.

The scores are read back from the judged samples an evaluation streamed to disk (`runner/difficulty.py`: rows of
problem, sample, reward), so any two finished evaluations can be compared after the fact. Unscorable samples
(reward None) are left out, as the accuracy itself leaves them out. tests/test_confidence.py pins the coverage.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from promptcot_pl.generation.streamed import iter_rows
from promptcot_pl.runner.difficulty import level_key

RESAMPLES = 4000


def scores(eval_dir: str | Path) -> np.ndarray:
    """[problems, samples] rewards of an evaluation directory's judged samples; NaN where unscorable."""
    rows = list(iter_rows(sorted(Path(eval_dir).glob("shard_*.jsonl"))))
    if not rows:
        raise FileNotFoundError(f"{eval_dir}: no judged samples")
    out = np.full((max(r["problem"] for r in rows) + 1, max(r["sample"] for r in rows) + 1), np.nan)
    for r in rows:
        out[r["problem"], r["sample"]] = np.nan if r["reward"] is None else float(r["reward"])
    return out


def _resampled_means(x: np.ndarray, problems: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The accuracy of each resample (a row of `problems`: problem indices drawn with replacement), every drawn
    problem with all its scorable samples; `chunk` resamples at a time, so memory stays at chunk × problems ×
    samples whatever the evaluation's size."""
    out = np.empty(len(problems))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only unscorable samples: NaN, left out
        for start in range(0, len(problems), chunk):
            rows = problems[start:start + chunk]
            out[start:start + chunk] = np.nanmean(x[rows].reshape(len(rows), -1), axis=1)
    return out


def interval(a: np.ndarray, b: np.ndarray | None = None, *, seed: int = 0, resamples: int = RESAMPLES,
             confidence: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high): the accuracy of `a`, or with `b` the paired difference b − a (b after, a before),
    with its percentile interval at `confidence` (raise it when one held-out set picks among several settings:
    0.95 over k tries is 1 − 0.05/k, Bonferroni). `a` and `b` are [problems, samples] score matrices of the same
    problems."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if b is not None and a.shape[0] != b.shape[0]:
        raise ValueError(f"paired evaluations need the same problems: {a.shape[0]} vs {b.shape[0]}")
    rng = np.random.default_rng(seed)
    problems = rng.integers(0, a.shape[0], size=(resamples, a.shape[0]))
    stat = _resampled_means(a, problems)
    estimate = float(np.nanmean(a))
    if b is not None:
        stat = _resampled_means(b, problems) - stat
        estimate = float(np.nanmean(b)) - estimate
    tail = 50 * (1 - confidence)  # percent in each tail
    low, high = np.nanpercentile(stat, [tail, 100 - tail])
    return estimate, float(low), float(high)


def combined_interval(evaluations: Sequence[tuple[np.ndarray, np.ndarray | None]], *, seed: int = 0,
                      resamples: int = RESAMPLES, confidence: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) of the mean over seeds of each seed's accuracy (`(a, None)`) or paired difference
    b − a (`(a, b)`): every resample draws each seed's problems anew, independently, and averages the seeds' values.
    The interval covers the sampling of problems and samples within the seeds run, not the spread of seeds one
    did not run (report the per-seed values beside it)."""
    rng = np.random.default_rng(seed)
    stats, estimates = np.zeros(resamples), []
    for a, b in evaluations:
        if b is not None and a.shape[0] != b.shape[0]:
            raise ValueError(f"paired evaluations need the same problems: {a.shape[0]} vs {b.shape[0]}")
        problems = rng.integers(0, a.shape[0], size=(resamples, a.shape[0]))
        stat = _resampled_means(a, problems)
        estimate = float(np.nanmean(a))
        if b is not None:
            stat, estimate = _resampled_means(b, problems) - stat, float(np.nanmean(b)) - estimate
        stats += stat
        estimates.append(estimate)
    tail = 50 * (1 - confidence)
    low, high = np.nanpercentile(stats / len(evaluations), [tail, 100 - tail])
    return float(np.mean(estimates)), float(low), float(high)


def ci_metrics(key: str, after: str | Path, before: str | Path | None = None, seed: int = 0,
               levels: Sequence[str] | None = None) -> dict[str, float]:
    """`key/ci_low`, `key/ci_high` of the evaluation in `after`; with `before`, also `key/gain` and its interval
    (`key/gain_ci_low`, `key/gain_ci_high`) against the evaluation in `before`. `levels`: each problem's level;
    the same per level under `key/<level>/…` ("level_1" for "Level 1", as `Difficulty.metrics` names them)."""
    a = scores(after)
    b = scores(before) if before is not None else None
    groups: dict[str, np.ndarray] = {"": np.arange(a.shape[0])}
    if levels is not None:
        names = np.array([level_key(level) for level in levels[: a.shape[0]]])
        groups |= {f"/{name}": np.flatnonzero(names == name) for name in sorted(set(names))}
    out: dict[str, float] = {}
    for suffix, rows in groups.items():
        _, low, high = interval(a[rows], seed=seed)
        out |= {f"{key}{suffix}/ci_low": low, f"{key}{suffix}/ci_high": high}
        if b is not None:
            gain, low, high = interval(b[rows], a[rows], seed=seed)
            out |= {f"{key}{suffix}/gain": gain, f"{key}{suffix}/gain_ci_low": low,
                    f"{key}{suffix}/gain_ci_high": high}
    return out


def describe(estimate: float, low: float, high: float, signed: bool = False) -> str:
    """"0.412 [0.371, 0.455]"; signed: "+0.036 [+0.010, +0.061]"."""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(estimate)} [{f.format(low)}, {f.format(high)}]"

