"""The PromptCoT 1.0 concept sampler follows its formula on a hand-made bank."""

import math
import random
from collections import Counter

import numpy as np
import pytest

from promptcot_pl.data.concepts import ConceptBank, ConceptSampler

SETS = [["a", "b"], ["a", "b"], ["a", "c"], ["b", "d"]]
LEVELS = ["AMC 8", "AMC 8", "AMC 8", "AIME"]
VECTORS = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0], "d": [-1.0, 0.0]}


def _bank():
    return ConceptBank.from_sets(SETS, LEVELS, lambda names: np.array([VECTORS[n] for n in names]))


def test_bank_counts():
    bank = _bank()
    assert bank.concepts == ["a", "b", "c", "d"]
    assert bank.frequency.tolist() == [3, 3, 1, 1]
    assert bank.cooccurrence[0, 1] == 2 and bank.cooccurrence[1, 0] == 2 and bank.cooccurrence[0, 3] == 0
    assert bank.levels == {"AIME": 1.0, "AMC 8": 3.0}


def test_first_concept_by_frequency_and_next_by_the_softmax_formula():
    sampler = ConceptSampler(_bank(), size=2, temperature=0.5, cooccurrence_weight=0.25, similarity_weight=1.0)
    assert sampler.first_distribution().tolist() == pytest.approx([3 / 8, 3 / 8, 1 / 8, 1 / 8])
    # after "a": score(c) = 0.25 * cooc(c, a) + cos(e_c, e_a); softmax of score / 0.5 over b, c, d
    scores = {"b": 0.25 * 2 + 0.0, "c": 0.25 * 1 + 1 / math.sqrt(2), "d": 0.0 - 1.0}
    z = sum(math.exp(s / 0.5) for s in scores.values())
    expected = [0.0] + [math.exp(scores[k] / 0.5) / z for k in "bcd"]
    assert sampler.next_distribution([0]).tolist() == pytest.approx(expected)
    # with two chosen, co-occurrence is summed and the cosine is to the (normalised) mean embedding
    mean = np.array([1.0, 1.0]) / math.sqrt(2)
    s_c = 0.25 * (1 + 0) + float(np.array([1, 1]) / math.sqrt(2) @ mean)
    s_d = 0.25 * (0 + 1) + float(np.array([-1, 0]) @ mean)
    p = sampler.next_distribution([0, 1])
    assert p[:2].tolist() == [0.0, 0.0]
    assert p[2] / p[3] == pytest.approx(math.exp((s_c - s_d) / 0.5))


def test_empirical_sets_match_the_distribution():
    sampler = ConceptSampler(_bank(), size=2, temperature=0.5, cooccurrence_weight=0.25)
    rng = random.Random(0)
    draws = [sampler.sample(rng) for _ in range(20_000)]
    first = Counter(concepts[0] for concepts, _ in draws)
    assert first["a"] / len(draws) == pytest.approx(3 / 8, abs=0.015)
    after_a = Counter(concepts[1] for concepts, _ in draws if concepts[0] == "a")
    p = sampler.next_distribution([0])
    n = sum(after_a.values())
    for i, name in enumerate("abcd"):
        assert after_a[name] / n == pytest.approx(p[i], abs=0.02)
    levels = Counter(level for _, level in draws)
    assert levels["AMC 8"] / len(draws) == pytest.approx(0.75, abs=0.015)
    assert all(len(set(c)) == 2 for c, _ in draws)  # never the same concept twice


def test_configured_levels_and_clear_errors():
    sampler = ConceptSampler(_bank(), size=3, levels={"HMMT": 1.0})
    assert sampler.sample(random.Random(1))[1] == "HMMT"
    with pytest.raises(ValueError, match="only 4 concepts"):
        ConceptSampler(_bank(), size=5)
    with pytest.raises(ValueError, match="temperature"):
        ConceptSampler(_bank(), size=2, temperature=0)
