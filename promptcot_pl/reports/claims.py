"""The paper's claims measured in kind over seeds: one row per claim, the per-seed paired difference, their mean with a
95% interval, and a verdict that follows from the interval: "holds" (it lies above 0), "does not hold" (below 0) or
"inconclusive" (it contains 0).

Claims about held-out accuracy are read from the judged samples their evaluations streamed to disk: the interval is
a paired bootstrap over problems within each seed, the seeds' values averaged (`runner/confidence.combined_interval`).
Every other claim has one number per seed: its interval is Student's t over the seeds (scipy), which with three seeds
is wide — these verdicts say "inconclusive" unless the seeds agree closely.

Reads what the stages wrote in each run directory — `em/history.jsonl` (and `em/frozen/history.jsonl`,
`em/baseline/metrics.json` when the run had `em.compare_frozen` / `em.no_rationale_baseline`), `analyze/DONE`,
`selfplay/DONE`, `sft/DONE` — so it works on any finished runs (experiments/claims.yaml makes all of them in one
run per seed). A claim whose inputs are missing from any run is listed as "not measured", never guessed.

Run: promptcot report --claims runs/claims/seed0 runs/claims/seed1 runs/claims/seed2 [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptcot_pl.data.jsonl import iter_json_rows
from promptcot_pl.runner.confidence import combined_interval, interval, scores


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _history(path: Path) -> list[dict] | None:
    return [row for _, row in iter_json_rows(path)] if path.is_file() else None


@dataclass
class Run:
    """The outputs of one finished run that the claims read (None where the run did not make them)."""

    path: Path
    em: list[dict] | None
    frozen: list[dict] | None
    baseline: dict | None
    analyze: dict | None
    selfplay: dict | None
    sft: dict | None

    @classmethod
    def load(cls, path: Path) -> Run:
        return cls(path, _history(path / "em/history.jsonl"), _history(path / "em/frozen/history.jsonl"),
                   _json(path / "em/baseline/metrics.json"), _json(path / "analyze/DONE"),
                   _json(path / "selfplay/DONE"), _json(path / "sft/DONE"))


Evaluations = Callable[["Run"], tuple[Path, Path] | None]  # (before, after) evaluation directories of a run


@dataclass(frozen=True)
class Claim:
    text: str  # what the paper says, in kind
    measure: str  # the paired difference computed per seed; the claim says it is > 0
    value: Callable[[Run], float | None]
    decimals: int = 3
    # held-out accuracy claims: the evaluations whose judged samples give the paired bootstrap
    evaluations: Evaluations | None = None


def _get(row: dict | None, key: str) -> float | None:
    return row.get(key) if row else None


def _last(history: list[dict] | None, key: str) -> float | None:
    return _get(history[-1], key) if history else None


def _em_gain(run: Run) -> float | None:
    return run.em[-1]["em/iwae_heldout"] - run.em[0]["em/iwae_heldout"] if run.em and len(run.em) > 1 else None


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or math.isnan(a) or math.isnan(b) else a - b


def _set(run: Run, name: str, key: str) -> float | None:
    return _get(run.analyze, f"analyze/{name}/{key}")


CLAIMS = (
    Claim("EM raises the held-out bound over the cold start", "IWAE(last EM iteration) − IWAE(cold start)",
          _em_gain, 2),
    Claim("learning the rationales (E-step) beats rationales frozen at the cold start",
          "IWAE(EM) − IWAE(e_step=false), last iteration",
          lambda r: _sub(_last(r.em, "em/iwae_heldout"), _last(r.frozen, "em/iwae_heldout")), 2),
    Claim("a rationale makes the problem predictable", "NLL(x | c) − NLL(x | c, z), nats per token",
          lambda r: _sub(_get(r.baseline, "em/nll_x_no_rationale_heldout"),
                         _last(r.em, "em/nll_x_given_z_heldout")), 4),
    Claim("EM p_θ writes harder problems than the cold-start p_θ (solver)", "pass rate(cold start) − pass rate(EM)",
          lambda r: _sub(_set(r, "synth/coldstart", "pass_rate"), _set(r, "synth/em", "pass_rate"))),
    Claim("EM p_θ writes harder problems than the cold-start p_θ (structure)",
          "oracle level(EM) − oracle level(cold start)",
          lambda r: _sub(_set(r, "synth/em", "oracle_level"), _set(r, "synth/coldstart", "oracle_level"))),
    Claim("EM p_θ writes longer solutions to solve than the cold-start p_θ", "tokens(EM) − tokens(cold start)",
          lambda r: _sub(_set(r, "synth/em", "mean_tokens"), _set(r, "synth/coldstart", "mean_tokens")), 1),
    Claim("rationales make synthesized problems harder (solver)", "pass rate(no rationale) − pass rate(EM)",
          lambda r: _sub(_set(r, "synth/no_rationale", "pass_rate"), _set(r, "synth/em", "pass_rate"))),
    Claim("rationales make synthesized problems harder (structure)", "oracle level(EM) − oracle level(no rationale)",
          lambda r: _sub(_set(r, "synth/em", "oracle_level"), _set(r, "synth/no_rationale", "oracle_level"))),
    Claim("synthesized problems are harder than the seed (solver)", "pass rate(seed) − pass rate(EM)",
          lambda r: _sub(_set(r, "seed", "pass_rate"), _set(r, "synth/em", "pass_rate"))),
    Claim("synthesized problems are harder than the seed (structure)", "oracle level(EM) − oracle level(seed)",
          lambda r: _sub(_set(r, "synth/em", "oracle_level"), _set(r, "seed", "oracle_level"))),
    Claim("EM p_θ's problems are more diverse than the cold start's", "pairwise distance(EM) − (cold start)",
          lambda r: _sub(_set(r, "synth/em", "pairwise_distance"), _set(r, "synth/coldstart", "pairwise_distance")),
          4),
    Claim("self-play raises held-out accuracy", "accuracy(after last round) − accuracy(before)",
          lambda r: _get(r.selfplay, "selfplay/accuracy_gain"), evaluations=lambda r: _selfplay_evals(r)),
    Claim("SFT on synthesized prompts beats seed prompts at an equal token budget",
          "accuracy(student on synth) − accuracy(student on seed)",
          lambda r: _sub(_get(r.sft, "sft/synth/accuracy_heldout"), _get(r.sft, "sft/seed/accuracy_heldout")),
          evaluations=lambda r: _evals(r, "sft/seed/eval", "sft/synth/eval")),
    Claim("SFT on synthesized prompts raises held-out accuracy", "accuracy(student on synth) − accuracy(before)",
          lambda r: _sub(_get(r.sft, "sft/synth/accuracy_heldout"), _get(r.sft, "sft/accuracy_heldout_before")),
          evaluations=lambda r: _evals(r, "sft/eval_before", "sft/synth/eval")),
    Claim("SFT on seed prompts raises held-out accuracy", "accuracy(student on seed) − accuracy(before)",
          lambda r: _sub(_get(r.sft, "sft/seed/accuracy_heldout"), _get(r.sft, "sft/accuracy_heldout_before")),
          evaluations=lambda r: _evals(r, "sft/eval_before", "sft/seed/eval")),
    Claim("control, not a claim: the solver refitted on its own training data (sft.replay_control)",
          "accuracy(solver after replay) − accuracy(solver)",
          lambda r: _sub(_get(r.sft, "sft/replay/accuracy_heldout"), _get(r.sft, "sft/replay/accuracy_heldout_before")),
          evaluations=lambda r: _evals(r, "sft/replay/eval_before", "sft/replay/eval")),
)


def _evals(run: Run, before: str, after: str) -> tuple[Path, Path] | None:
    a, b = run.path / before, run.path / after
    return (a, b) if a.is_dir() and b.is_dir() else None


def _selfplay_evals(run: Run) -> tuple[Path, Path] | None:
    rounds = sorted((run.path / "selfplay").glob("round_*/eval"))
    return (rounds[0], rounds[-1]) if len(rounds) > 1 else None


def verdict(low: float, high: float) -> str:
    return "holds" if low > 0 else "does not hold" if high < 0 else "inconclusive"


def _t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student's t interval of the mean of per-seed values (one value: no interval)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def measure(runs: Sequence[Run]) -> list[dict]:
    """Per claim: the per-seed values (None when not measured in some run), their mean, its 95% interval (how:
    `method`), the per-seed intervals of accuracy claims, and the verdict the interval gives."""
    rows: list[dict[str, Any]] = []
    for claim in CLAIMS:
        values = [v for v in (claim.value(run) for run in runs) if v is not None]
        if len(values) < len(runs):
            rows.append({"claim": claim, "values": None})
            continue
        found = [claim.evaluations(run) for run in runs] if claim.evaluations else []
        evals = [e for e in found if e is not None]
        row: dict[str, Any] = {"claim": claim, "values": values, "mean": statistics.fmean(values)}
        if evals and len(evals) == len(runs):
            pairs = [(scores(a), scores(b)) for a, b in evals]
            row["seed_intervals"] = [list(interval(a, b, seed=i)[1:]) for i, (a, b) in enumerate(pairs)]
            row["mean"], row["low"], row["high"] = combined_interval(pairs)
            row["method"] = "paired bootstrap over problems, seeds averaged"
        else:
            row["low"], row["high"] = _t_interval(values)
            row["method"] = f"t over {len(values)} seeds"
        row["verdict"] = verdict(row["low"], row["high"]) if not math.isnan(row["low"]) else "inconclusive"
        rows.append(row)
    return rows


def table(rows: Sequence[dict], n: int) -> str:
    lines = [f"| claim (in kind) | paired difference per seed (claimed > 0) | n = {n} seeds | mean [95% interval] "
             "| interval | here |", "|---|---|---|---|---|---|"]
    for row in rows:
        claim = row["claim"]
        if row["values"] is None:
            lines.append(f"| {claim.text} | {claim.measure} | – | – | – | not measured |")
            continue
        d = claim.decimals
        per_seed = [f"{v:+.{d}f}" for v in row["values"]]
        if "seed_intervals" in row:
            per_seed = [f"{v} [{lo:+.{d}f}, {hi:+.{d}f}]" for v, (lo, hi) in zip(per_seed, row["seed_intervals"])]
        lines.append(f"| {claim.text} | {claim.measure} | {', '.join(per_seed)} | {row['mean']:+.{d}f} "
                     f"[{row['low']:+.{d}f}, {row['high']:+.{d}f}] | {row['method']} | {row['verdict']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories, one per seed")
    parser.add_argument("--json", type=Path, help="also write the rows (values, mean, interval, verdict) to this file")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.runs if not (p / "config.yaml").is_file()]
    if missing:
        parser.exit(2, f"claims: not a run directory (no config.yaml): {', '.join(missing)}\n")
    rows = measure([Run.load(p) for p in args.runs])
    print(table(rows, len(args.runs)))
    print(f"\n{' '.join(['promptcot report --claims', *map(str, args.runs)])}")
    if args.json:
        args.json.write_text(json.dumps([{"claim": r["claim"].text, "measure": r["claim"].measure,
                                          **{k: v for k, v in r.items() if k != "claim"}} for r in rows], indent=2))


if __name__ == "__main__":
    main()
