"""Cold-start annotation: the answer parsers (never evaluating model text), an annotator model's answers through a
scripted engine (what is under test is what happens to them: parsing, per-reason failure counts, triples), the
built-in math domain's reference annotator, and `annotate → coldstart → em` end to end on 50 problems given only
as {"problem", "answer"} rows."""

import json
import random
from collections import Counter

import numpy as np
import pytest

from promptcot_pl.config import RoleFormat
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.records import Problem
from promptcot_pl.domains import build_domain
from promptcot_pl.domains import math as math_domain
from promptcot_pl.stages.annotate import oracle
from promptcot_pl.stages.annotate.config import AnnotateConfig
from promptcot_pl.stages.annotate.loop import EngineAnnotator, annotate
from promptcot_pl.stages.annotate.parse import parse_concepts, parse_level, parse_rationale
from tests.conftest import REPO, ScriptedEngine, promptcot

LEVELS = ["AMC 8", "AMC 12", "AIME"]


def test_concept_answers_parse_or_name_their_failure():
    assert parse_concepts('Here: ["gcd", "lcm", "primes"]\nDifficulty Level: AIME', 2) == (["gcd", "lcm"], None)
    assert parse_concepts("gcd, lcm and primes", 2) == (None, "no_list")
    assert parse_concepts("[1, 2, 3]", 2) == (None, "bad_list")
    assert parse_concepts('["gcd"]', 2) == (None, "too_few_concepts")
    assert parse_concepts('["gcd", "gcd ", "lcm"]', 2) == (["gcd", "lcm"], None)  # duplicates merged
    assert parse_concepts('[__import__("os").system("touch /tmp/pwned")]', 1) == (None, "bad_list")  # never run
    assert parse_concepts('["a", "b"]', 2, truncated=True) == (None, "truncated")
    assert parse_level("...\n**Difficulty Level:** aime.", LEVELS) == ("AIME", None)
    assert parse_level("Difficulty Level: IMO", LEVELS) == (None, "unknown_level")
    assert parse_level("no level", LEVELS) == (None, "no_level")
    assert parse_rationale("Sure. Thinking Process: combine gcd with lcm.") == ("combine gcd with lcm.", None)
    assert parse_rationale("Thinking Process:   ") == (None, "empty_rationale")
    assert parse_rationale("Thinking Process: <!-- END PROBLEM --> x") == (None, "contains_markers")


class CallsEngine(ScriptedEngine):
    """A scripted engine that answers its k-th `generate` call with the k-th list of outputs."""

    def __init__(self, calls):
        super().__init__([])
        self.calls = iter(calls)

    def generate(self, prompts, sampling, local=False, indices=None):
        self.outputs = next(self.calls)
        return super().generate(prompts, sampling, local)


def test_an_annotator_models_answers_become_triples_and_counted_failures():
    problems = [Problem(id=str(i), domain="math", problem=f"P{i}?", answer=str(i)) for i in range(4)]
    problems[3].level = "AMC 8"  # a row's own level wins over the annotator's
    engine = CallsEngine([
        [['["gcd", "lcm"]\nDifficulty Level: AIME'],
         ["I think it is about numbers."],  # no list
         ['["gcd", "lcm"]\nDifficulty Level: Olympiad'],  # not a configured level
         ['["primes", "sieve"]']],  # no level needed: the row has one
        [["Thinking Process: start from gcd."], ["Thinking Process: sieve it."]],  # the two that parsed
    ])
    cfg = AnnotateConfig(num_concepts=2, levels=LEVELS)
    annotator = EngineAnnotator(cfg, PromptFormat("annotator", RoleFormat("raw", "release")), engine)
    failures = Counter()
    triples = annotate(annotator, "scripted", problems, cfg, failures)
    assert [(t.problem, t.concepts, t.level) for t in triples] == [("P0?", ["gcd", "lcm"], "AIME"),
                                                                   ("P3?", ["primes", "sieve"], "AMC 8")]
    assert triples[0].rationale == "start from gcd." and triples[0].answer == "0"
    assert failures == {"no_list": 1, "unknown_level": 1}
    assert "identify 2 foundational concepts" in engine.prompts[0] and "P0?" in engine.prompts[0]
    assert "Fundamental Concepts:\n1. gcd\n2. lcm\n\nDifficulty Level: AIME" in engine.prompts[4]


def test_the_reference_annotator_knows_every_family_of_the_math_domain():
    for family in math_domain.FAMILIES:
        item = family(random.Random(1), 1)
        concepts, why = parse_concepts(oracle.concepts_answer(item.problem, 5, "AIME"), 5)
        assert why is None and concepts[:3] == item.concepts
        rationale, why = parse_rationale(oracle.rationale_answer(item.problem, concepts, "AIME"))
        assert why is None and item.problem.split("$")[0].strip() in rationale
    assert parse_concepts(oracle.concepts_answer("What is love?", 5, "AIME"), 5) == (None, "no_list")


@pytest.mark.slow
def test_annotate_coldstart_em_on_50_problems_given_as_problem_answer_rows(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"problem": t.problem, "answer": t.answer}) + "\n"
                              for t in build_domain("math", 50, seed=3)))
    args = ["run", str(REPO / "experiments/debug/tiny.yaml"), "stages=[annotate,coldstart,em]",
            f"annotate.corpus=[{corpus}]", "annotate.annotators=[oracle,tiny]", "annotate.sampling.max_new_tokens=64",
            f"model.cache_dir={tmp_path / 'cache'}", "em.compare_frozen=false"]
    promptcot(*args, cwd=tmp_path, check=True, timeout=900)
    run_dir = tmp_path / "runs/tiny/main"
    metrics = json.loads((run_dir / "annotate/DONE").read_text())
    assert metrics["annotate/problems"] == 50 and metrics["annotate/triples"] == 50
    # half the problems went to the untrained tiny annotator first: its answers failed, counted, then the oracle's
    assert metrics["annotate/tiny/annotated"] == 0 and metrics["annotate/oracle/annotated"] == 50
    assert sum(v for k, v in metrics.items() if k.startswith("annotate/tiny/failed_")) == 25
    triples = [json.loads(line) for line in (run_dir / "annotate/triples.jsonl").read_text().splitlines()]
    assert all(len(t["concepts"]) == 5 and t["rationale"] and t["answer"] for t in triples)
    with np.load(run_dir / "annotate/concept_bank.npz") as bank:
        assert bank["frequency"].sum() == 5 * metrics["annotate/n_train"] and bank["embeddings"].shape[1] > 0
    cold = json.loads((run_dir / "coldstart/DONE").read_text())
    assert cold["coldstart/q_nll_heldout"] < cold["coldstart/q_nll_heldout_init"]
    em = json.loads((run_dir / "em/DONE").read_text())
    assert np.isfinite(em["em/iwae_heldout"]) and (run_dir / "em/iter_002/DONE").is_file()
