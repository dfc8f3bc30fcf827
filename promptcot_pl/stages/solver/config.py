"""The `solver.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from promptcot_pl.config.common import OptimConfig, at_least_one


@dataclass
class SolverConfig:
    """The fixed solver x → solution (SPEC §7): difficulty analyses, majority-vote references for synthesized
    math problems, later the self-play policy. `tiny`: fit the offline tiny model on the seed's worked solutions
    (stage `solver`); anything else is a Hugging Face model path or name, used untrained."""

    path: str = "tiny"
    epochs: int = 3
    batch_size: int = 16
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))

    def invalid(self) -> list[tuple[str, str]]:
        return at_least_one(self, "epochs")

