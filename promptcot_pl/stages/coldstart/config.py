"""The `coldstart.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from promptcot_pl.config.common import OptimConfig, at_least_one


@dataclass
class ColdStartConfig:
    """Maximum-likelihood fit of q_φ on (c,x)→z and p_θ on c→(z,x) (SPEC §3, paper: lr 2e-5, batch 16, 2 epochs)."""

    epochs: int = 2
    batch_size: int = 16
    # Held-out NLL is measured on at most this many held-out triples (all when None).
    eval_limit: int | None = None
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-5))

    def invalid(self) -> list[tuple[str, str]]:
        return at_least_one(self, "epochs", "batch_size")

