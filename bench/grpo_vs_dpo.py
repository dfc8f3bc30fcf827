"""Self-play with GRPO beside self-play with DPO, paired per seed: each run's held-out accuracy before self-play and
after its last round, the gain with its 95% interval (paired bootstrap over the held-out problems), and the
difference GRPO − DPO after the last round (the same problems, samples seeded alike), per seed and combined over
seeds (`runner/confidence.combined_interval`). Runs of one seed must share every stage before self-play.

Run: python bench/grpo_vs_dpo.py --dpo runs/quickstart/seed{0,1,2} --grpo runs/quickstart/grpo{0,1,2}
"""

from __future__ import annotations

import argparse
from pathlib import Path

from promptcot_pl.runner.confidence import combined_interval, describe, interval, scores


def evals(run: Path) -> tuple[Path, Path]:
    rounds = sorted((run / "selfplay").glob("round_*/eval"))
    if len(rounds) < 2:
        raise SystemExit(f"{run}: self-play has no finished round")
    return rounds[0], rounds[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dpo", nargs="+", type=Path, required=True)
    parser.add_argument("--grpo", nargs="+", type=Path, required=True)
    args = parser.parse_args()
    if len(args.dpo) != len(args.grpo):
        raise SystemExit("give one DPO run and one GRPO run per seed")
    gains: dict[str, list] = {"dpo": [], "grpo": []}
    diffs = []
    print("| seed run | before | DPO gain | GRPO gain | GRPO − DPO after |\n|---|---|---|---|---|")
    for dpo, grpo in zip(args.dpo, args.grpo):
        (d0, d1), (g0, g1) = evals(dpo), evals(grpo)
        before, before_g = scores(d0), scores(g0)
        if (before != before_g).any():
            raise SystemExit(f"{dpo} and {grpo} start from different policies (round 0 differs)")
        row = [describe(*interval(before))]
        for name, after in (("dpo", scores(d1)), ("grpo", scores(g1))):
            gains[name].append((before, after))
            row.append(describe(*interval(before, after), signed=True))
        diffs.append((scores(d1), scores(g1)))
        row.append(describe(*interval(*diffs[-1]), signed=True))
        print(f"| {grpo.name} | " + " | ".join(row) + " |")
    print(f"| over seeds | | {describe(*combined_interval(gains['dpo']), signed=True)} | "
          f"{describe(*combined_interval(gains['grpo']), signed=True)} | "
          f"{describe(*combined_interval(diffs), signed=True)} |")


if __name__ == "__main__":
    main()
