"""The `em.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from promptcot_pl.config.common import OptimConfig, at_least_one


@dataclass
class EMConfig:
    """The rationale/prompt EM loop (SPEC §3). These are the "EM hyperparameters" sweeps explore."""

    iterations: int = 3
    k: int = 8  # rationales sampled from q_φ per (c, x) pair
    pairs_per_iteration: int | None = None  # a fresh random subset of training pairs each iteration (None: all)
    heldout_limit: int | None = 200  # held-out pairs for the bound (None: all)
    selection: Literal["best", "softmax"] = "best"  # best: argmax_k R (the paper); softmax: w ∝ exp((R − β log q)/τ)
    tau: float = 1.0
    beta: float = 0.0
    length_normalize: bool = False  # divide R and log q by their token counts before selecting
    e_step: bool = True  # false: the ablation — rationales decoded once from the cold-start q_φ, then frozen
    z_mode: Literal["greedy", "sample", "best"] = "greedy"  # how z̃ for the M-step comes from q_φ
    rationale_temperature: float = 1.0  # sampling z_k ~ q_φ in the E-step
    # The held-out IWAE/ELBO always take eval_k samples at temperature 1, top-p 1 (the q whose log q is scored),
    # whatever k and rationale_temperature: a bound, and comparable across runs that sweep them.
    eval_k: int = 16
    z_temperature: float = 1.0  # z̃ when z_mode = sample
    max_rationale_tokens: int = 128
    epochs_e: int = 1
    epochs_m: int = 1
    batch_size: int = 16
    e_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-6))
    m_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-6))
    # Also fit p_θ on c → x only (no rationale) and report its held-out NLL of x for comparison.
    no_rationale_baseline: bool = True
    # Also run the e_step=false ablation from the same cold start (under em/frozen/, metrics em_frozen/…).
    compare_frozen: bool = False

    def invalid(self) -> list[tuple[str, str]]:
        out = at_least_one(self, "k", "eval_k", "iterations", "batch_size", "max_rationale_tokens")
        if self.z_mode == "best" and not self.e_step:
            out.append(("z_mode", "'best' takes the E-step's winner, but e_step is false"))
        if self.selection == "softmax" and self.tau <= 0:
            out.append(("tau", "must be > 0 for softmax selection"))
        return out

