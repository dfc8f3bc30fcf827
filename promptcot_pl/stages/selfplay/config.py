"""The `selfplay.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from promptcot_pl.config.common import OptimConfig, SamplingConfig


@dataclass
class DPOConfig:
    """The preference objective of self-play (`losses/dpo.py`)."""

    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0  # > 0: conservative DPO (sigmoid only)
    rpo_weight: float = 0.0  # weight of the chosen completions' NLL per token (RPO); 0: off
    # "sequence": the paper's pairs, whole completions; "step": both completions end after the solution step in
    # which they first differ (Step-DPO; `stages/selfplay/data.first_step_cut`)
    granularity: Literal["sequence", "step"] = "sequence"
    # "precomputed": reference log-probs from one batched no-grad pass per round (one model in memory while
    # training); "frozen": a frozen copy of the round's starting policy scores every batch.
    reference: Literal["precomputed", "frozen"] = "precomputed"
    # The policy trains with dropout off (TRL's default): its reference log-probs are computed without dropout, so
    # the policy starts from exactly the reference (margin 0, sigmoid loss log 2) and its implicit rewards carry no
    # dropout noise (REVIEW m17). false: the model's own dropout.
    disable_dropout: bool = True


@dataclass
class SelfPlayConfig:
    """Self-play preference optimisation (SPEC §5): rollouts on synthesized problems, verifiable rewards, pairs
    from problems whose pass rate lies in the window, DPO; `rounds` times, each round's reference being the policy
    at its start. The policy starts from the solver (stage `solver`) or the best SFT student (stage `sft`)."""

    # "solver": the model of stage `solver`; "sft": the student of `sft.sources` with the highest held-out
    # accuracy after SFT (stage `sft` runs first) — the paper's order on a model too weak to self-play from scratch
    policy: Literal["solver", "sft"] = "solver"

    rounds: int = 2
    # What the policy practises on: the synthesized problems (stage `synth`), or the seed's training problems —
    # the baseline the paper compares synthesized prompts with.
    problems: Literal["synth", "seed"] = "synth"
    max_problems: int = 200  # problems drawn per round (a different draw each round)
    rollouts: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=8, temperature=1.2, max_new_tokens=256))
    # Keep problems whose pass rate lies in (pass_low, pass_high]: the release keeps exactly 1/2, the paper's text
    # says "< 1/2" (pass_high_inclusive: false).
    pass_low: float = 0.0
    pass_high: float = 0.5
    pass_low_inclusive: bool = False
    pass_high_inclusive: bool = True
    # A problem needs this many scorable rollouts (reward not None) for a pass rate; fewer: left out, counted
    # (None: half of rollouts.n, rounded up)
    min_scored_rollouts: int | None = None
    dpo: DPOConfig = field(default_factory=DPOConfig)
    epochs: int = 1
    batch_size: int = 16  # pairs per optimizer step (the paper: 16)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, warmup_ratio=0.1))  # the paper: 1e-6
    # held-out accuracy (the seed's held-out problems, ground-truth answers) before and after every round
    eval: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, temperature=0.6, top_p=0.95))
    eval_limit: int = 200

    @property
    def min_scored(self) -> int:
        return self.min_scored_rollouts or -(-self.rollouts.n // 2)
