"""New concept sets c for synthesis: the PromptCoT 1.0 sampler (SPEC §4).

The bank is built from the seed triples: each concept's frequency, pairwise co-occurrence counts (two concepts in
one triple's set) and a sentence embedding per concept. A set is drawn one concept at a time:

- the first concept with probability freq(c) / Σ freq;
- each next concept c ∉ S with probability ∝ exp(score(c) / T), where
  score(c) = w_co · Σ_{s∈S} cooc(c, s) + w_sim · cos(e_c, mean_{s∈S} e_s).

Counts are raw, as in the formula; with the paper's T = 0.2 they dominate the cosine term, so `w_co` rescales
them. The difficulty level is drawn from configured weights, or from the seed's level frequencies.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from promptcot_pl.data.atomic import atomic_write
from promptcot_pl.data.records import Triple


@dataclass
class ConceptBank:
    concepts: list[str]
    frequency: np.ndarray  # [C] triples containing the concept
    cooccurrence: np.ndarray  # [C, C] triples containing both (zero diagonal)
    embeddings: np.ndarray  # [C, d], L2-normalised rows
    levels: dict[str, float]  # level → weight

    @classmethod
    def from_sets(cls, sets: Sequence[Sequence[str]], levels: Sequence[str], embed) -> ConceptBank:
        """`sets`: the seed's concept lists; `embed(texts) -> [n, d]` array (normalised here)."""
        concepts = sorted({c for s in sets for c in s})
        index = {c: i for i, c in enumerate(concepts)}
        frequency = np.zeros(len(concepts))
        cooccurrence = np.zeros((len(concepts), len(concepts)))
        for s in sets:
            ids = sorted({index[c] for c in s})
            frequency[ids] += 1
            for a, b in itertools.combinations(ids, 2):
                cooccurrence[a, b] += 1
                cooccurrence[b, a] += 1
        vectors = np.asarray(embed(concepts), dtype=np.float64)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        counts = Counter(levels)
        return cls(concepts, frequency, cooccurrence, vectors, {k: float(v) for k, v in sorted(counts.items())})

    @classmethod
    def from_triples(cls, triples: Sequence[Triple], embed) -> ConceptBank:
        return cls.from_sets([t.concepts for t in triples], [t.level for t in triples], embed)

    def save(self, path: Path) -> None:
        """One `.npz` (atomically replaced): concepts, frequencies, co-occurrence counts, embeddings, levels."""
        atomic_write(path, lambda tmp: np.savez(tmp, concepts=np.array(self.concepts), frequency=self.frequency,
                                                cooccurrence=self.cooccurrence, embeddings=self.embeddings,
                                                levels=np.array(json.dumps(self.levels))))

    @classmethod
    def load(cls, path: Path) -> ConceptBank:
        with np.load(path) as data:
            return cls(data["concepts"].tolist(), data["frequency"], data["cooccurrence"], data["embeddings"],
                       json.loads(str(data["levels"])))


class ConceptSampler:
    def __init__(self, bank: ConceptBank, *, size: int = 5, temperature: float = 0.2, cooccurrence_weight: float = 1.0,
                 similarity_weight: float = 1.0, levels: Mapping[str, float] | None = None) -> None:
        if size > len(bank.concepts):
            raise ValueError(f"concept sets of {size} asked for, but the bank holds only {len(bank.concepts)} concepts")
        if temperature <= 0:
            raise ValueError("the sampler's temperature must be > 0")
        self.bank, self.size, self.temperature = bank, size, temperature
        self.w_co, self.w_sim = cooccurrence_weight, similarity_weight
        self.levels = dict(levels) if levels else bank.levels

    def first_distribution(self) -> np.ndarray:
        return self.bank.frequency / self.bank.frequency.sum()

    def next_distribution(self, chosen: Sequence[int]) -> np.ndarray:
        """P(next = c | chosen) over all bank concepts (0 for the chosen ones)."""
        mean = self.bank.embeddings[list(chosen)].mean(axis=0)
        mean /= max(np.linalg.norm(mean), 1e-12)
        score = self.w_co * self.bank.cooccurrence[:, list(chosen)].sum(axis=1) + self.w_sim * self.bank.embeddings @ mean
        logits = score / self.temperature
        logits[list(chosen)] = -np.inf
        weights = np.exp(logits - logits[np.isfinite(logits)].max())
        return weights / weights.sum()

    def sample(self, rng: random.Random) -> tuple[list[str], str]:
        """One (concepts, level); `rng` makes a run reproducible."""
        chosen = [_draw(self.first_distribution(), rng)]
        while len(chosen) < self.size:
            chosen.append(_draw(self.next_distribution(chosen), rng))
        names, weights = zip(*self.levels.items())
        level = rng.choices(names, weights=weights)[0]
        return [self.bank.concepts[i] for i in chosen], level


def _draw(p: np.ndarray, rng: random.Random) -> int:
    return rng.choices(range(len(p)), weights=p.tolist())[0]
