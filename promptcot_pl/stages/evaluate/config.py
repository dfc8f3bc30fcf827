"""The `evaluate.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from promptcot_pl.config.common import at_least_one, sampling_invalid


@dataclass
class EvaluateConfig:
    """Accuracy on evaluation files (SPEC §7): math sets → mean accuracy over `n` samples per problem, code sets
    (`input_output` or `tests`) → pass@1 (mean over the samples of passing every test); each with its unscorable
    share. The format of a file is recognised from its fields; the release's chat-rendered prompts are unwrapped
    and rendered anew for the evaluated model (`prompts.solver`)."""

    sets: list[str] = field(default_factory=list)
    # "solver", "selfplay" (the last self-play policy), "sft" (the better student of sft.sources, by held-out accuracy) or an HF path
    model: str = "solver"
    n: int = 16  # samples per problem (the paper: 16 at temperature 0.6, top-p 0.95)
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 512
    limit: int | None = None  # at most this many problems per set (None: all)

    def invalid(self) -> list[tuple[str, str]]:
        return at_least_one(self, "n", "max_new_tokens") + sampling_invalid(self.temperature, self.top_p)


