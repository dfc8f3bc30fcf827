"""The `analyze.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from promptcot_pl.config.common import at_least_one, sampling_invalid


@dataclass
class AnalyzeConfig:
    """Difficulty and diversity of the problem sets (SPEC §7)."""

    max_problems: int = 200  # per set
    n_samples: int = 4  # solver samples per problem (the paper: 16)
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 256

    def invalid(self) -> list[tuple[str, str]]:
        return at_least_one(self, "n_samples", "max_problems") + sampling_invalid(self.temperature, self.top_p)


