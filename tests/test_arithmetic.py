"""The built-in arithmetic world: worked solutions that are right column by column, statements the oracle reads
back (synthesized ones too), levels that are real structure, and a tokenizer that keeps digits apart."""

import random
import re
from collections import Counter

import pytest

from promptcot_pl.domains import build_domain
from promptcot_pl.domains.arithmetic import (
    LEVELS,
    Problem,
    column_steps,
    parse_problem,
    solve,
    statement,
    structure,
)
from promptcot_pl.domains.math_oracle import solve as math_oracle_solve
from tests.reference import reward


@pytest.fixture(scope="module")
def triples():
    return build_domain("arithmetic", 600, seed=3)


def test_the_world_is_seeded_distinct_and_balanced(triples):
    assert [t.id for t in build_domain("arithmetic", 600, seed=3)] == [t.id for t in triples]
    assert len({t.problem for t in triples}) == 600
    counts = Counter(t.level for t in triples)
    assert set(counts) == set(LEVELS) and min(counts.values()) > 150
    assert all(t.domain == "math" and len(t.concepts) == 5 for t in triples)


def _written(parts: list[str]) -> str:
    """The number a column scratchpad writes: the last column whole, the others' digits, right to left."""
    digits = [re.search(r"write (\d+)", p).group(1) for p in parts]
    return str(int(digits[-1] + "".join(reversed(digits[:-1]))))


@pytest.mark.parametrize("op", ["+", "-", "*"])
def test_every_column_scratchpad_is_right_and_spells_its_result(op):
    rng = random.Random(op)
    for _ in range(2000):
        a = rng.randint(10, 9999)
        b = rng.randint(2, 9) if op == "*" else rng.randint(10, a if op == "-" else 9999)
        result, parts = column_steps(a, op, b)
        assert result == (a + b if op == "+" else a - b if op == "-" else a * b)
        assert _written(parts) == str(result), (a, op, b, parts)
        for part in parts:  # every one-digit fact written down is true
            lhs, rhs = part.split(", write")[0].split(" = ")
            assert eval(lhs.replace(" ", "")) == int(rhs)  # noqa: S307 - our own digits and + - *


def test_the_oracle_reads_every_seed_statement_back(triples):
    for t in triples:
        solved = solve(t.problem)
        assert solved == (t.solution, t.answer)
        assert math_oracle_solve(t.problem) == solved  # the SFT oracle teacher and synth's oracle references
        assert reward(t.solution, t) == 1.0
        assert structure(t.problem)["level"] == LEVELS.index(t.level) + 1  # levels are what the problem realises


def test_levels_are_structure_more_operations_and_steps(triples):
    by_level = {level: [structure(t.problem) for t in triples if t.level == level] for level in LEVELS}
    steps = [sum(s["column_steps"] for s in rows) / len(rows) for rows in by_level.values()]
    assert steps == sorted(steps) and steps[-1] > 2.5 * steps[0]
    assert [max(s["operations"] for s in rows) for rows in by_level.values()] == [1, 2, 3]


@pytest.mark.parametrize("text", [
    "Mia has 47 stickers. She finds 38 more. How many does he have now?",  # asks about another person
    "Mia has 47 stickers. He finds 38 more. How many does she have now?",  # wrong pronoun
    "Mia has 47 stickers. She juggles 38. How many does she have now?",  # no such operation
    "Mia has 47 stickers. How many does she have now?",  # no operation at all
    "Mia has 4 stickers. She gives away 38. How many does she have now?",  # below zero
    "Find the remainder when $2^{10}$ is divided by $7$.",
])
def test_statements_outside_the_world_are_not_read(text):
    assert parse_problem(text) is None and solve(text) is None and structure(text) is None


def test_a_synthesized_statement_with_new_numbers_is_solved():
    problem = Problem("Leo", "coins", 63, (("-", 27), ("*", 4), ("+", 15)))
    text = statement(problem, random.Random(0))
    assert parse_problem(text) == problem
    assert solve(text)[1] == str((63 - 27) * 4 + 15)
    assert structure(text) == {"operations": 3.0, "column_steps": 7.0, "level": 3.0}


@pytest.mark.parametrize("style", ["chatml", "llama3", "sentencepiece"])
def test_split_digits_gives_every_digit_its_own_token(triples, style):
    from promptcot_pl.models.tokenizer_styles import train_tokenizer

    texts = [t.problem + "\n" + t.solution + "\n" + t.rationale for t in triples]
    tok = train_tokenizer(texts, 600, style, split_digits=True)
    plain = train_tokenizer(texts, 600, style)
    for t in triples[:50]:
        ids = tok(t.solution, add_special_tokens=False).input_ids
        assert tok.decode(ids) == t.solution
        pieces = tok.convert_ids_to_tokens(ids)
        assert all(sum(ch.isdigit() for ch in piece) <= 1 for piece in pieces)
    merged = [p for t in triples[:50] for p in plain.convert_ids_to_tokens(plain(t.solution).input_ids)]
    assert any(sum(ch.isdigit() for ch in piece) > 1 for piece in merged)  # without it, BPE merges digit runs


def test_structural_difficulty_reads_levels_and_checks_references(triples):
    from promptcot_pl.data.records import Problem as Record
    from promptcot_pl.stages.analyze.structure import structural_difficulty

    level3 = [t for t in triples if t.level == "Level 3"][:10]
    wrong = [Record(id=f"w{i}", domain="math", problem=t.problem, answer=str(int(t.answer) + 1))
             for i, t in enumerate(level3[:5])]
    foreign = Record(id="f", domain="math", problem="Find the remainder when $2^{10}$ is divided by $7$.", answer="2")
    out = structural_difficulty(level3[5:] + wrong + [foreign])
    assert out["oracle_readable"] == 10 / 11 and out["oracle_level"] == 3.0 and out["oracle_operations"] == 3.0
    assert out["reference_agreement"] == 0.5  # the five wrong references disagree with the oracle
