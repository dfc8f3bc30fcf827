import json

import pytest

from promptcot_pl.data.formats import default_format
from promptcot_pl.data.jsonl import JsonlError, read_jsonl, write_jsonl
from promptcot_pl.data.prompts import parse_concepts, parse_marked, prompt_model_example, render_marked
from promptcot_pl.data.records import ConceptSet, Pair, Problem, Rollout, Trace, Triple
from promptcot_pl.data.released import (
    read_concept_rows,
    read_problem_generation_rows,
    to_problem_generation_row,
)

SAMPLES = [
    Triple(id="t1", domain="math", concepts=["gcd", "lcm"], level="AIME", rationale="z", problem="x",
           answer="12", solution="... \\boxed{12}"),
    Triple(id="t2", domain="code", concepts=["stacks"], level="Div2 A", rationale="z", problem="x",
           tests=[{"input": "1\n", "output": "2\n"}]),
    ConceptSet(concepts=["a", "b"], level="AMC 8"),
    Problem(id="p", domain="math", problem="x", answer="1/2", meta={"em_iteration": 3, "filters": ["parsed"]}),
    Rollout(problem_id="p", index=0, text="\\boxed{1}", valid=True, reward=None),
    Pair(problem_id="p", prompt="q", chosen="good", rejected="bad", meta={"pass_rate": 0.25}),
    Trace(problem_id="p", prompt="q", completion="a"),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_records_round_trip_through_jsonl(tmp_path, record):
    path = tmp_path / "r.jsonl"
    assert write_jsonl(path, [record, record]) == 2
    assert read_jsonl(path, type(record)) == [record, record]


def test_malformed_json_line_reports_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(SAMPLES[0].to_dict())
    path.write_text(f"{good}\n\n{good}\n{{\"id\": \"t3\", \n{good}\n")
    with pytest.raises(JsonlError, match=rf"{path}:4: malformed JSON"):
        read_jsonl(path, Triple)


@pytest.mark.parametrize("change, field", [
    ({"concepts": "gcd"}, "concepts"),
    ({"concepts": ["gcd", 3]}, "concepts"),
    ({"tests": [{"input": 1, "output": "2"}]}, "tests"),
    ({"colour": "red"}, "colour"),
    ({"answer": 12}, "answer"),
])
def test_bad_field_reports_line_and_field(tmp_path, change, field):
    row = {**SAMPLES[0].to_dict(), **change}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(SAMPLES[0].to_dict()) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(JsonlError, match=rf"{path}:2: field '{field}'"):
        read_jsonl(path, Triple)


def test_missing_required_field(tmp_path):
    row = SAMPLES[0].to_dict()
    del row["problem"]
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(JsonlError, match=r":1: field 'problem': missing"):
        read_jsonl(path, Triple)


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [SAMPLES[0]])

    def broken():
        yield SAMPLES[0]
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, broken())
    assert read_jsonl(path, Triple) == [SAMPLES[0]]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_marked_output_round_trip_and_rejects_incomplete():
    text = render_marked("the plan", "the problem")
    assert parse_marked("noise " + text + " trailing") == ("the plan", "the problem")
    assert parse_marked(text.replace("<!-- END PROBLEM -->", "")) is None
    assert parse_marked("<!-- BEGIN RATIONALE --> <!-- END RATIONALE --><!-- BEGIN PROBLEM -->x<!-- END PROBLEM -->") is None


def test_problem_generation_rows_round_trip(tmp_path):
    triple = SAMPLES[0]
    path = tmp_path / "gen.jsonl"
    write_jsonl(path, [to_problem_generation_row(default_format("prompt_model"), triple)])
    (back,) = read_problem_generation_rows(path, "math")
    assert (back.concepts, back.level, back.rationale, back.problem) == (
        triple.concepts, triple.level, triple.rationale, triple.problem)


def test_problem_generation_row_without_markers_names_line(tmp_path):
    path = tmp_path / "gen.jsonl"
    prompt, _ = prompt_model_example(default_format("prompt_model"), ["a"], "AIME", "z", "x")
    path.write_text(json.dumps({"prompt": prompt, "completion": "no markers"}) + "\n")
    with pytest.raises(JsonlError, match=r"gen.jsonl:1: field 'completion'"):
        read_problem_generation_rows(path, "math")


def test_released_concept_rows(tmp_path):
    concepts = tmp_path / "c.jsonl"
    concepts.write_text('{"concepts": ["a", "b"], "extra": 1}\n{"concepts": []}\n')
    with pytest.raises(JsonlError, match=r"c.jsonl:2: field 'concepts'"):
        read_concept_rows(concepts)
    # the 2.0 release's field names, and a dump that carries only the rendered prompt
    prompt = default_format("prompt_model").prompt("math", concepts="Foundational Concepts:\n1. c\n2. d\n\nDifficulty Level: AMC12")
    concepts.write_text(json.dumps({"foundational_concepts": ["a", "b"], "level": "AIME"}) + "\n"
                        + json.dumps({"prompt": prompt}) + "\n")
    assert read_concept_rows(concepts) == [ConceptSet(concepts=["a", "b"], level="AIME"),
                                           ConceptSet(concepts=["c", "d"], level="AMC12")]


def test_parse_concepts_reads_bullets_and_level():
    text = "Foundational Concepts:\n1. modular arithmetic\n- primes\n\nDifficulty Level: AIME\n"
    assert parse_concepts(text) == (["modular arithmetic", "primes"], "AIME")
