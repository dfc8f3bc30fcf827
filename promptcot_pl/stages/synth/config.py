"""The `synth.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from promptcot_pl.config.common import SamplingConfig, at_least_one


@dataclass
class SynthConfig:
    """Problem synthesis from p_θ (SPEC §4): concept sampler, generation, filters, verifiable targets."""

    n_concept_sets: int = 200
    concepts_per_set: int = 5
    concept_temperature: float = 0.2  # PromptCoT 1.0's sampler temperature
    cooccurrence_weight: float = 1.0  # score = w_co · Σ co-occurrence counts + w_sim · cos(e_c, mean chosen)
    similarity_weight: float = 1.0
    levels: dict[str, float] | None = None  # level → weight (None: the seed's level frequencies)
    embedding_model: str = "all-MiniLM-L6-v2"  # the offline packaged copy; or a sentence-transformers path
    # concept sets from a file instead of the sampler: the release's concept rows (`foundational_concepts` or
    # `concepts`, `level`, or a rendered `prompt`) or stage annotate's concept_sets.jsonl; at most n_concept_sets
    concepts_path: str | None = None
    # (z, x) ~ p_θ(·|c): n samples per concept set (the paper: many seeds, temperature 0.8)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, temperature=0.8, max_new_tokens=512))
    generators: list[str] = field(default_factory=lambda: ["em", "coldstart"])  # whose p_θ synthesizes
    near_duplicate_threshold: float = 0.2  # MinHash-LSH Jaccard over content words (the paper: 0.2)
    num_perm: int = 128
    decontamination_ngram: int = 13  # word n-gram overlap with an evaluation problem drops a problem
    eval_sets: list[str] = field(default_factory=list)  # JSONL files with "problem"; the held-out split always counts
    min_words: int = 5  # shorter problems are degenerate
    # math: "vote" — the majority of the solver's reference_votes samples (the paper) — or "oracle": the built-in
    # worlds' reference solver (`domains/math_oracle.py`; statements it cannot read are dropped, counted)
    references: Literal["vote", "oracle"] = "vote"
    # math: majority vote of the solver over reference_votes samples; code: test_calls test-writer calls
    reference_votes: int = 8
    reference_temperature: float = 0.7
    reference_max_new_tokens: int = 256
    min_confidence: float = 0.5  # the majority's share of the votes a reference answer needs
    test_calls: int = 4
    test_writer: str | None = None  # code: the model that writes unit tests (None: the solver); HF path or name
    released_format: bool = False  # also write problems_released.jsonl (PromptCoT problem-generation rows)

    def invalid(self) -> list[tuple[str, str]]:
        out = at_least_one(self, "n_concept_sets", "concepts_per_set", "reference_votes", "decontamination_ngram")
        bad = [g for g in self.generators if g not in ("em", "coldstart", "no_rationale")]
        if bad or not self.generators:
            out.append(("generators", f"expected a non-empty list of 'em', 'coldstart' and/or 'no_rationale', got "
                                      f"{list(self.generators)}"))
        if not 0.0 < self.near_duplicate_threshold < 1.0:
            out.append(("near_duplicate_threshold", "must lie in (0, 1)"))
        if not 0.0 <= self.min_confidence <= 1.0:
            out.append(("min_confidence", "must lie in [0, 1]"))
        return out

