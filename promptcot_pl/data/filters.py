"""Filters between generated and kept problems (SPEC §4), each a pure function over problem texts.

- exact duplicates: the same text after lower-casing and collapsing whitespace;
- near duplicates: MinHash-LSH (`datasketch`) over each problem's set of content words, candidates confirmed by
  their exact Jaccard similarity, so a kept pair never exceeds the threshold (paper: 0.2);
- degenerate prompts: proof-only ("prove that", "show that" without a question), "no solution" templates,
  too few words, trivial answers;
- decontamination: any word n-gram shared with an evaluation problem (paper: n = 13); a problem shorter than n
  words is contaminated when it equals an evaluation problem word for word.

Every filter returns which items it keeps plus the reason for each drop, so the recipe can log the funnel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"[a-z]+|[0-9]+")  # "7x" and "7 x" give the same words
# Function words carry no content; numbers and LaTeX names stay (they are what distinguishes templated problems).
STOPWORDS = frozenset("""a an and are as at be by for from has have if in is it its of on or that the their then there
these this to was what which with let find compute determine given how many much value""".split())


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS}


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def exact_duplicates(texts: Sequence[str]) -> list[int | None]:
    """For each text, the index of the earlier text it duplicates (None for first occurrences)."""
    first: dict[str, int] = {}
    out: list[int | None] = []
    for i, text in enumerate(texts):
        key = normalise(text)
        out.append(first.get(key))
        first.setdefault(key, i)
    return out


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicates(texts: Sequence[str], threshold: float, num_perm: int = 128, seed: int = 1) -> list[int | None]:
    """For each text, the index of an earlier *kept* text whose content-word Jaccard similarity exceeds
    `threshold` (None when the text is kept). Greedy in order, like the paper's dedupe."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept_sets: dict[int, set[str]] = {}
    out: list[int | None] = []
    for i, text in enumerate(texts):
        tokens = content_words(text)
        signature = MinHash(num_perm=num_perm, seed=seed)
        signature.update_batch([t.encode() for t in tokens])
        # LSH finds probable matches; the exact Jaccard decides, so false positives never drop a problem
        match = min((j for j in lsh.query(signature) if jaccard(tokens, kept_sets[j]) > threshold), default=None)
        out.append(match)
        if match is None:
            lsh.insert(i, signature)
            kept_sets[i] = tokens
    return out


_PROOF = re.compile(r"\b(prove|show)\s+that\b|\bprove\b", re.I)
_QUESTION = re.compile(r"\b(find|compute|what|how many|how much|determine|evaluate|calculate|solve|which)\b|\?", re.I)
_NO_SOLUTION = re.compile(r"\bno (real )?solutions?\b|\bdoes not exist\b|\bimpossible\b|\bcannot be determined\b", re.I)
TRIVIAL_ANSWERS = frozenset({"", "yes", "no", "true", "false", "none", "undefined", "n/a"})


def degenerate_reason(problem: str, answer: str | None = None, min_words: int = 5) -> str | None:
    """Why a problem is degenerate ("proof_only", "no_solution", "too_short", "trivial_answer"), or None."""
    if len(words(problem)) < min_words:
        return "too_short"
    if _PROOF.search(problem) and not _QUESTION.search(_PROOF.sub(" ", problem)):
        return "proof_only"
    if _NO_SOLUTION.search(problem):
        return "no_solution"
    if answer is not None and normalise(answer).strip("$ .") in TRIVIAL_ANSWERS:
        return "trivial_answer"
    return None


class NgramIndex:
    """Word n-grams of the evaluation problems, to test a generated problem for overlap. An evaluation problem
    shorter than n words is matched as a whole: a text that contains its words in order, anywhere, is
    contaminated ("what is 2 + 3?" embedded in a longer problem is caught)."""

    def __init__(self, eval_texts: Iterable[str], n: int) -> None:
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        self.short: dict[int, set[tuple[str, ...]]] = {}  # word count → the short problems of that length
        for text in eval_texts:
            w = words(text)
            if 0 < len(w) < n:
                self.short.setdefault(len(w), set()).add(tuple(w))
            self.grams.update(_ngrams(w, n))

    def contaminated(self, text: str) -> bool:
        w = words(text)
        if any(g in self.grams for g in _ngrams(w, self.n)):
            return True
        return any(g in short for size, short in self.short.items() for g in _ngrams(w, size))


def _ngrams(w: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(w[i:i + n]) for i in range(len(w) - n + 1))
