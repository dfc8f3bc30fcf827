"""The `selfplay.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from promptcot_pl.config.common import OptimConfig, SamplingConfig, at_least_one


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
    # dropout noise. false: the model's own dropout.
    disable_dropout: bool = True

    def invalid(self) -> list[tuple[str, str]]:
        out = []
        if self.beta <= 0:
            out.append(("beta", "must be > 0"))
        if not 0.0 <= self.label_smoothing < 0.5:
            out.append(("label_smoothing", "must lie in [0, 0.5)"))
        if self.label_smoothing and self.loss != "sigmoid":
            out.append(("label_smoothing", f"conservative DPO is a sigmoid loss; loss is {self.loss!r}"))
        return out


@dataclass
class GRPOConfig:
    """Online self-play from verifiable rewards (`selfplay.optimizer: grpo`; `losses/grpo.py`,
    `stages/selfplay/grpo_module.py`, `stages/selfplay/online.py`). A round's problems are practised in generation
    batches of `problems_per_step` problems × `selfplay.rollouts.n` rollouts sampled by the engine from the current
    policy; each batch gives `iterations` optimizer steps; `selfplay.epochs` passes over the round's problems."""

    problems_per_step: int = 8  # groups per generation batch (TRL: per-device batch × steps / num_generations)
    iterations: int = 1  # μ: optimizer steps per generation batch (TRL's num_iterations)
    scale_rewards: bool = True  # divide each group's centred rewards by its std (false: Dr. GRPO)
    eps_low: float = 0.2  # the ratio is clipped to [1 − eps_low, 1 + eps_high] (DAPO's clip-higher: 0.28)
    eps_high: float = 0.28
    beta: float = 0.0  # KL to the round's starting policy (k3, bias-corrected as TRL's); 0: no reference model
    # groups whose rollouts all got the same reward teach nothing: drop them and draw more problems, up to
    # `max_resample` more draws of a batch's size (DAPO's dynamic sampling); counted either way
    filter_zero_variance: bool = True
    max_resample: int = 2
    # weight each token by min(π_old / π_engine, is_cap), the engine's sampling log-probs against the trainer's
    # (TRL's vllm_importance_sampling_correction); the gap is logged either way when this is on
    importance_sampling: bool = True
    is_cap: float = 2.0
    # the engine takes the policy's weights after every `sync_every` optimizer steps (and at every resume); then
    # it is checked on a probe prompt: its greedy tokens must be the policy's own argmax (`probe_tokens`; 0: off)
    sync_every: int = 1
    probe_tokens: int = 16
    # the engine frees its memory once a batch is sampled and takes the weights again before the next (vLLM sleep
    # mode on GPUs; HF drops its copy): for an accelerator too small for the engine beside the update. Every wake
    # is a push, probe-checked
    sleep_during_update: bool = False

    def invalid(self) -> list[tuple[str, str]]:
        out = []
        for key in ("problems_per_step", "iterations", "sync_every"):
            if getattr(self, key) < 1:
                out.append((key, f"must be >= 1, got {getattr(self, key)}"))
        for key in ("eps_low", "eps_high", "beta", "max_resample", "probe_tokens"):
            if getattr(self, key) < 0:
                out.append((key, f"must be >= 0, got {getattr(self, key)}"))
        if self.eps_low >= 1:
            out.append(("eps_low", f"must be < 1 (the ratio's lower bound 1 − eps_low > 0), got {self.eps_low}"))
        if self.is_cap < 1:
            out.append(("is_cap", f"must be >= 1, got {self.is_cap}"))
        return out


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
    # "dpo": the paper's offline rounds (rollouts → pairs → DPO); "grpo": online GRPO on the round's problems
    optimizer: Literal["dpo", "grpo"] = "dpo"
    dpo: DPOConfig = field(default_factory=DPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    epochs: int = 1
    batch_size: int = 16  # pairs per optimizer step (the paper: 16)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, warmup_ratio=0.1))  # the paper: 1e-6
    # held-out accuracy (the seed's held-out problems, ground-truth answers) before and after every round
    eval: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, temperature=0.6, top_p=0.95))
    eval_limit: int = 200

    @property
    def min_scored(self) -> int:
        return self.min_scored_rollouts or -(-self.rollouts.n // 2)

    def invalid(self) -> list[tuple[str, str]]:
        out = at_least_one(self, "max_problems", "batch_size", "epochs", "eval_limit")
        if not 0.0 <= self.pass_low < self.pass_high <= 1.0:
            out.append(("pass_high", f"the window needs 0 <= pass_low < pass_high <= 1, got "
                                     f"({self.pass_low}, {self.pass_high})"))
        if self.min_scored_rollouts is not None and not 1 <= self.min_scored_rollouts <= self.rollouts.n:
            out.append(("min_scored_rollouts", f"must lie in [1, rollouts.n={self.rollouts.n}], got "
                                               f"{self.min_scored_rollouts}"))
        if self.optimizer == "grpo" and self.rollouts.n < 2:
            out.append(("rollouts.n", f"GRPO compares rollouts within a group: needs >= 2, got {self.rollouts.n}"))
        return out

