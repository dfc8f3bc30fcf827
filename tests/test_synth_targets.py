"""Verifiable targets for synthesized problems: majority-vote references (equivalent answers cluster, low
confidence drops) and written unit tests (broken JSON dropped with a counted reason, tests a reference solution
fails are not kept). The engine is a scripted stand-in for a model: what is under test is what happens to its
outputs, with the real math checker and the real sandbox."""

from promptcot_pl.config import RoleFormat, SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.stages.synth.targets import majority_references, written_tests
from tests.conftest import ScriptedEngine


def test_majority_vote_clusters_equivalent_answers_and_drops_low_confidence():
    engine = ScriptedEngine([
        [r"so \boxed{1/2}", r"\boxed{0.5}", r"\boxed{\frac{1}{2}}", r"\boxed{3}"],  # 3 of 4 agree: kept, 0.75
        [r"\boxed{1}", r"\boxed{2}", r"\boxed{3}", "no answer"],  # best share 1/4 < 0.5: dropped
        ["no answer", "none either", "", "still nothing"],  # nothing to vote on
    ])
    refs, dropped = majority_references(engine, PromptFormat("solver", RoleFormat("raw", "ours")), ["p1", "p2", "p3"], SamplingConfig(n=4), min_confidence=0.5)
    assert refs[0] == ("1/2", 0.75)
    assert refs[1] is None and refs[2] is None
    assert dropped == {"low_confidence": 1, "no_answer": 1}
    assert engine.prompts[0].startswith("Problem:\np1")  # the solver's prompt


def test_written_tests_drop_broken_json_and_duplicates():
    engine = ScriptedEngine([
        ['{"input": "3\\n", "output": "9\\n"}',  # kept
         '{"input": "4\\n", "output": "16"',  # broken JSON (no closing brace)
         '{"input": "5\\n", "output": "25\\n"}',  # kept
         '{"input": "3\\n", "output": "9\\n"}'],  # the same test again
        ["nothing useful", "{'input': 1}", '{"input": "1"}', "[]"],  # nothing survives: the problem has no tests
    ])
    tests, reasons = written_tests(engine, PromptFormat("test_writer", RoleFormat("raw", "ours")), ["square n", "other"], SamplingConfig(n=4))
    assert tests == [[{"input": "3\n", "output": "9\n"}, {"input": "5\n", "output": "25\n"}], []]
    assert reasons == {"no_json": 3, "bad_json": 1, "duplicate_test": 1, "missing_keys": 1,
                       "no_tests": 1}
