"""A paired gain measured on held-out problems that no setting was chosen on.

When one held-out set both picks a run's settings (several tries, keep the best) and reports the winner's gain, the
reported interval is optimistic. The seed keeps more held-out problems than `sft.eval_limit`/`selfplay.eval_limit`
evaluate; this script evaluates two models of a finished run on held-out problems past that limit — problems the
run never scored — with the run's own engine, prompt format, reward and evaluation sampling, and prints the paired
gain (after − before) with its 95% interval (`runner/confidence.py`), overall and per level.

Run: python bench/heldout_gain.py RUN_DIR BEFORE_MODEL AFTER_MODEL [--start 100] [--limit 100] [--section selfplay]
  e.g. python bench/heldout_gain.py runs/smollm2/main sft/synth/student/model selfplay/round_001/model
Model paths are relative to RUN_DIR (or absolute). Samples stream to RUN_DIR/heldout_gain/<start>-<end>/ and a
rerun reuses them (the same seed as the run's round 0).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.jsonl import read_jsonl
from promptcot_pl.data.records import Triple
from promptcot_pl.experiment import load_config
from promptcot_pl.generation import build_engine
from promptcot_pl.models import load_tokenizer
from promptcot_pl.runner.confidence import ci_metrics, describe
from promptcot_pl.runner.difficulty import difficulty
from promptcot_pl.stages.selfplay.loop import eval_sampling
from promptcot_pl.verify.rewards import Rewards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--start", type=int, default=None, help="first held-out problem (default: the eval limit)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--section", choices=["selfplay", "sft"], default="selfplay",
                        help="whose evaluation sampling (n, temperature, length) to use")
    args = parser.parse_args()
    cfg = load_config(args.run_dir / "config.yaml")
    section = getattr(cfg, args.section)
    start = section.eval_limit if args.start is None else args.start
    if start < section.eval_limit:
        print(f"warning: problems {start}–{section.eval_limit - 1} are among those the run evaluated "
              f"({args.section}.eval_limit={section.eval_limit})", flush=True)
    split = args.run_dir / ("annotate" if "annotate" in cfg.stages else "seed") / "heldout.jsonl"  # triples_dir
    heldout = read_jsonl(split, Triple)[start: start + args.limit]
    if not heldout:
        raise SystemExit(f"{split}: no held-out problem from {start} on")
    out = args.run_dir / "heldout_gain" / f"{start}-{start + len(heldout)}"
    rewards = Rewards.from_config(cfg.verify)
    # the run's own evaluation sampling and seed (self-play's: as its round 0 evaluated the starting model)
    sampling = eval_sampling(cfg) if args.section == "selfplay" else replace(cfg.sft.eval, seed=cfg.seed)
    accuracy: dict[str, dict[str, float]] = {}
    for name, model in (("before", args.before), ("after", args.after)):
        path = Path(model) if Path(model).is_absolute() else args.run_dir / model
        fmt = PromptFormat("solver", cfg.prompts.solver, load_tokenizer(path), where=str(path))
        engine = build_engine(cfg.engine, path, cfg.model.dtype, cfg.seed)
        try:
            accuracy[name] = difficulty(engine, fmt, heldout, [t.problem for t in heldout], sampling, rewards, out / name,
                                 cfg.engine.shard_prompts, path).metrics("accuracy")
        finally:
            engine.close()
        print(f"{name} ({path}): accuracy {accuracy[name]['accuracy']:.4f}", flush=True)
    gain = ci_metrics("accuracy", out / "after", out / "before", cfg.seed, [t.level for t in heldout])
    print(f"held-out problems {start}–{start + len(heldout) - 1} ({len(heldout)} × {sampling.n} samples, "
          f"T {sampling.temperature}): after {describe(accuracy['after']['accuracy'], gain['accuracy/ci_low'], gain['accuracy/ci_high'])}, "
          f"gain {describe(gain['accuracy/gain'], gain['accuracy/gain_ci_low'], gain['accuracy/gain_ci_high'], signed=True)}")
    for level in sorted({k.split("/")[1] for k in gain if k.startswith("accuracy/level_")}):
        key = f"accuracy/{level}"
        print(f"  {level}: {accuracy['before'][key]:.3f} → {accuracy['after'][key]:.3f}, gain {describe(gain[key + '/gain'], gain[key + '/gain_ci_low'], gain[key + '/gain_ci_high'], signed=True)}")


if __name__ == "__main__":
    main()
