"""Synthesis filters: exact and MinHash near-duplicates, degenerate prompts, n-gram decontamination, test-writer
output parsing."""

import pytest

from promptcot_pl.data.filters import (
    NgramIndex,
    degenerate_reason,
    exact_duplicates,
    jaccard,
    near_duplicates,
)
from promptcot_pl.stages.synth.test_writer import parse_test

DISTINCT = [
    "Let $a=50$ and $b=60$. Find the sum of their greatest common divisor and least common multiple.",
    "What is the sum of the digits of $7^{12}$?",
    "A geometric sequence has first term $1$ and common ratio $2$. Find the sum of its first 4 terms.",
    "Solve for $x$: $17x + 2 = 5x + 26$.",
    "How many positive divisors does $360$ have?",
    "A bag holds 3 red and 5 blue marbles. Two are drawn without replacement; what is the probability both are red?",
]
PARAPHRASES = [  # each a light rewording of DISTINCT[i]
    (0, "Let $a = 50$ and $b = 60$. Compute the sum of their greatest common divisor and their least common multiple."),
    (2, "A geometric sequence has first term $1$ and common ratio $2$. What is the sum of its first 4 terms?"),
    (5, "A bag holds 3 red and 5 blue marbles. Two are drawn without replacement. What is the probability both are red?"),
]


def test_exact_duplicates_ignore_case_and_whitespace():
    texts = ["Find  x.", "find x.", "Find y.", "FIND X."]
    assert exact_duplicates(texts) == [None, 0, None, 0]


def test_minhash_removes_planted_paraphrases_and_keeps_distinct_problems():
    texts = DISTINCT + [p for _, p in PARAPHRASES]
    dup = near_duplicates(texts, threshold=0.5)
    assert dup[: len(DISTINCT)] == [None] * len(DISTINCT)  # distinct problems all kept
    assert dup[len(DISTINCT):] == [i for i, _ in PARAPHRASES]  # each paraphrase points at its original


def test_near_duplicate_decision_is_the_exact_jaccard():
    a, b = "alpha beta gamma delta", "alpha beta gamma epsilon"  # Jaccard 3/5 = 0.6
    assert jaccard({"alpha", "beta", "gamma", "delta"}, {"alpha", "beta", "gamma", "epsilon"}) == pytest.approx(0.6)
    assert near_duplicates([a, b], threshold=0.55) == [None, 0]
    assert near_duplicates([a, b], threshold=0.65) == [None, None]


@pytest.mark.parametrize("problem, answer, reason", [
    ("Prove that the square root of 2 is irrational.", None, "proof_only"),
    ("Show that for every integer n the number n^3 - n is divisible by 6.", None, "proof_only"),
    ("Prove that x > 0, then find the smallest value of x^2 + 1/x^2.", None, None),  # a question remains
    ("Find all real x with x^2 + 1 = 0, or state that there is no solution.", None, "no_solution"),
    ("Find x.", None, "too_short"),
    ("Is 91 a prime number? Answer yes or no.", "No", "trivial_answer"),
    ("How many positive divisors does 360 have?", "24", None),
])
def test_degenerate_prompts(problem, answer, reason):
    assert degenerate_reason(problem, answer) == reason


def test_decontamination_removes_a_planted_copy_of_an_eval_problem():
    evals = ["Let $r$ and $s$ be the roots of $x^{2} + 7 x = 0$. Find $r^2+s^2$ without solving the equation first.",
             "What is 2+2?"]
    index = NgramIndex(evals, n=13)
    planted = "Problem: let $r$ and $s$ be the roots of $x^{2} + 7x = 0$. Find $r^2 + s^2$ without solving the equation first!"
    assert index.contaminated(planted)  # case, spacing and a prefix do not hide a 13-gram overlap
    assert index.contaminated("what is 2 + 2")  # shorter than n: equal word sequences
    assert not index.contaminated("What is 2+3?")
    assert not any(index.contaminated(t) for t in DISTINCT)
    # a short evaluation problem embedded in a longer one is caught too (as a word sequence)
    assert index.contaminated("Alice asks Bob: what is 2 + 2? He answers after a while, and she checks it.")
    assert not index.contaminated("Alice asks Bob what 2 + 2 is, and she checks it.")


def test_seed_train_and_sft_seed_prompts_are_decontaminated_against_eval_sets(tmp_path):
    """Both SFT arms are filtered against the same evaluation problems: the seed's held-out split and
    `synth.eval_sets` (synthesis uses the same `eval_problems`). The seed stage itself, which builds the split,
    checks `synth.eval_sets` only."""
    from dataclasses import dataclass

    from promptcot_pl.data.jsonl import write_jsonl
    from promptcot_pl.domains import build_domain
    from promptcot_pl.experiment import load_config
    from promptcot_pl.runner.problems import decontaminated

    triples = build_domain("arithmetic", 40, seed=0)
    leaked = [triples[3].problem, " ".join(triples[7].problem.split()[:6])]  # one whole, one short prefix
    evals = tmp_path / "eval.jsonl"
    evals.write_text("".join(f'{{"problem": {t!r}}}\n'.replace("'", '"') for t in leaked))
    split = tmp_path / "seed"
    split.mkdir()

    @dataclass
    class Ctx:
        cfg: object

        def triples_dir(self):
            return split

    ctx = Ctx(load_config(None, [f"synth.eval_sets=[{evals}]"]))
    kept, dropped = decontaminated(ctx, triples, "seed")
    assert triples[3] not in kept and triples[7] not in kept and dropped >= 2
    no_evals = Ctx(load_config(None, []))
    assert decontaminated(no_evals, triples, "seed") == (triples, 0)
    write_jsonl(split / "heldout.jsonl", [triples[11]])  # the held-out split: the SFT arms check it too
    kept, dropped = decontaminated(no_evals, triples, "sft/seed")
    assert triples[11] not in kept and dropped >= 1
    assert decontaminated(no_evals, triples, "seed", heldout=False) == (triples, 0)


@pytest.mark.parametrize("text, reason", [
    ('{"input": "3\\n1 2 3\\n", "output": "6\\n"}', None),
    ('Here is a test:\n```json\n{"input": "5\\n", "output": "120"}\n```\nDone.', None),
    ('{"input": 4, "output": 16}', None),  # numbers become strings
    ("no json here at all", "no_json"),
    ('{"input": "3", "output": "6"', "no_json"),
    ('{"input": "3", "output": 6,}', "bad_json"),
    ('{"input": "3"}', "missing_keys"),
    ('```json\n[1, 2]\n```', "not_an_object"),
    ('{"input": "3", "output": ["6"]}', "bad_values"),
    ('{"input": "3", "output": "   "}', "bad_values"),
    ("{" * 5000 + "}" * 5000, "bad_json"),  # hostile nesting
])
def test_test_writer_output_is_parsed_or_dropped_with_a_reason(text, reason):
    test, why = parse_test(text)
    assert why == reason
    assert (test is None) == (reason is not None)
    if test:
        assert set(test) == {"input", "output"} and all(isinstance(v, str) for v in test.values())
