"""What a stage receives: the config, its directories, its MLflow run and its engines (`runner/engines.py`)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptcot_pl.data.atomic import atomic_write_text
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.runner.engines import Engines
from promptcot_pl.tracking import Tracker

if TYPE_CHECKING:  # annotation only: the experiment config sits above this floor (docs/architecture.md)
    from promptcot_pl.experiment import ExperimentConfig

log = logging.getLogger("promptcot")


@dataclass
class StageContext:
    cfg: ExperimentConfig
    run_dir: Path
    stage_dir: Path
    tracker: Tracker
    run_id: str | None  # this stage's MLflow run
    # intermediate results (step, metrics) for a sweep's pruner; may raise to stop the run (optuna.TrialPruned)
    report: Callable[[int, Mapping[str, float]], None] | None = None
    curves: set[str] = field(default_factory=set)  # metrics logged per step (iteration, round) by `log_step`
    engines: Engines = field(init=False)  # the generation engines the stage holds (`runner/engines.py`)

    def __post_init__(self) -> None:
        self.engines = Engines(self.cfg.engine, self.cfg.model.dtype, self.cfg.seed)

    def log_step(self, metrics: Mapping[str, float], step: int) -> None:
        """Log one point of per-step curves on this stage's run. The pipeline then leaves these keys out when it
        logs the stage's final metrics there (a final value at step 0 would sit on the curve's first point)."""
        self.tracker.log_metrics(self.run_id, metrics, step=step)
        self.curves.update(metrics)

    def log_model(self, path: Path, fit_run: str | None, training_data: Any, source: Path | None = None) -> None:
        """Log the HF checkpoint this stage exported at `path` as an MLflow model of the fit's run `fit_run`, and the
        data it was trained on as that run's dataset input (named after the fit, with its digest, the file it came
        from — `source`, default the stage's directory — and its size). The model's params are its lineage:
        experiment, run directory, stage, EM iteration or self-play round, the training data's name and digest,
        and the seed. The weights stay where they are (`path` is a param): a 7B checkpoint per EM iteration is not
        copied into the artifact store."""
        if self.tracker is None or not self.tracker.enabled:  # other ranks, tracking off: no digest to compute
            return
        rel = path.relative_to(self.run_dir).as_posix()
        run = fit_run or self.run_id
        data_name, digest = rel.removesuffix("/model"), data_digest(training_data)
        self.tracker.log_dataset(run, data_name, digest, source or self.stage_dir, len(training_data))
        params = {"experiment": str(self.cfg.name), "run_dir": str(self.run_dir.resolve()), "stage": self.stage_dir.name,
                  "path": str(path.resolve()), "training_data": data_name, "training_data_sha1": digest,
                  "seed": str(self.cfg.seed), "base_model": str(self.cfg.model.path)}
        if step := re.search(r"\b(iter|round)_(\d+)\b", rel):
            params["em_iteration" if step.group(1) == "iter" else "selfplay_round"] = str(int(step.group(2)))
        self.tracker.log_model(run, key=rel, name=rel.replace("/", "-"), params=params)

    def prompt_format(self, role: str, model: str | Path | None) -> PromptFormat:
        """`prompts.<role>` for the model at `model`, whose tokenizer renders chat prompts (None: the words only,
        e.g. for the corpus the tiny tokenizer is trained on)."""
        cfg = getattr(self.cfg.prompts, role)
        if model is None:
            return PromptFormat.words_only(role, cfg)
        from promptcot_pl.models import load_tokenizer

        return PromptFormat(role, cfg, load_tokenizer(model), where=str(model))

    def rewards(self) -> Any:
        """The stage's reward function (`verify.*` settings): every reward a stage computes goes through it."""
        from promptcot_pl.verify.rewards import Rewards

        return Rewards.from_config(self.cfg.verify)

    def check_rewards(self, rewards: Any, problems: Any, thinking: bool, where: str, step: int | None = None) -> dict:
        """The reward canaries (verify/canaries.py) on `problems`, logged as `canary/*` on this stage's run (at
        `step` when given); raises RewardHackable — the stage does not start — if any canary is rewarded.
        Nothing (an empty dict) with `verify.canaries=false`."""
        if not self.cfg.verify.canaries:
            return {}
        from promptcot_pl.verify.canaries import RewardHackable, check

        try:
            metrics = check(rewards, problems, thinking, where)
        except RewardHackable as refused:  # logged with the probe's own values: the canaries are not run twice
            if self.tracker is not None:
                self.tracker.log_metrics(self.run_id, refused.metrics, step=step or 0)
            raise
        if self.tracker is not None:
            self.tracker.log_metrics(self.run_id, metrics, step=step or 0)
        return metrics

    def triples_dir(self) -> Path:
        """Where the (c, z, x) triples and their train/held-out split are: stage `annotate`'s output when the
        experiment annotates a corpus, else stage `seed`'s."""
        return self.stage_output("annotate" if "annotate" in self.cfg.stages else "seed")

    def stage_output(self, stage: str) -> Path:
        """The directory of an earlier stage, which must have finished."""
        path = self.run_dir / stage
        if not (path / "DONE").is_file():
            raise FileNotFoundError(f"stage {stage!r} has not finished in {self.run_dir} (no {path / 'DONE'}); "
                                    f"run it first: promptcot stage {stage} ...")
        return path


def data_digest(data: Any) -> str:
    """A short content hash of training data (lists of pairs, ids, weights): the lineage of a logged model."""
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (temporary file + rename); in a multi-process run by rank 0, seen by all on return."""
    on_rank_zero(_write_json, path, data)


def mark_done(path: Path) -> None:
    """Create an (empty) DONE marker; rank 0 writes it in a multi-process run."""
    on_rank_zero(path.touch)


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))
