"""The `annotate.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from promptcot_pl.config.common import SamplingConfig, at_least_one


@dataclass
class AnnotateConfig:
    """Cold-start annotation (SPEC §3, RELEASE_FORMATS §2): a corpus of problems → concepts, level and rationale
    from annotator models → the triples `coldstart` fits and the concept bank synthesis samples from."""

    # JSONL corpora: rows with "problem" and "answer" | "solution" | "tests", or the release's eval files
    corpus: list[str] = field(default_factory=list)
    # Annotator models, each an HF path or name, "tiny" (the offline tiny model, untrained: its answers rarely
    # parse) or "oracle" (the built-in math domain's reference annotator). Problems are dealt out in turn; one
    # whose annotation fails to parse is retried by the next annotator (every failure counted by reason).
    annotators: list[str] = field(default_factory=lambda: ["oracle"])
    num_concepts: int = 5  # concepts asked for per problem (the paper: 5)
    levels: list[str] = field(default_factory=lambda: ["AMC 8", "AMC 12", "AIME"])  # the levels an annotator picks from
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=1, temperature=0.0, max_new_tokens=512))
    max_items: int | None = None  # at most this many corpus rows (None: all)

    def invalid(self) -> list[tuple[str, str]]:
        return at_least_one(self, "num_concepts")

