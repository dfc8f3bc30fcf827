"""Teacher traces and their filters on a hand-made set: every drop counted under its reason. The engine is a
scripted stand-in for a teacher model (what is under test is what happens to its outputs, with the real format
check and the real math checker); the oracle teacher is the real domain solver."""

from collections import Counter

from promptcot_pl.config import RoleFormat, SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.records import Problem
from promptcot_pl.stages.sft.traces import (
    engine_traces,
    keep_correct,
    oracle_traces,
    released_format,
    unique_prompts,
)
from tests.conftest import ScriptedEngine

OURS = PromptFormat("solver", RoleFormat("raw", "ours"))  # "Problem:\n…\nSolution:\n", no template
PROBLEMS = [
    Problem(id="a", domain="math", problem="Solve for $x$: $7x -4 = 2x +11$.", answer="3"),
    Problem(id="b", domain="math", problem="Solve for  $x$: $7x -4 =  2x +11$.", answer="3"),  # same prompt
    Problem(id="c", domain="math", problem="In how many ways can a committee of $2$ be chosen from $5$ people?",
            answer="10"),
    Problem(id="d", domain="math", problem="What is the airspeed of a swallow?", answer="11"),
    Problem(id="e", domain="math", problem="Compute $1^2+2^2+\\dots+3^2$.", answer=None),
]


def test_engine_traces_filters_count_every_drop():
    dropped = Counter()
    problems = unique_prompts(PROBLEMS, dropped)
    assert [p.id for p in problems] == ["a", "c", "d", "e"] and dropped == {"duplicate_prompt": 1}
    engine = ScriptedEngine([
        ["x = 3, so $\\boxed{3}$.", "x is three"],                # a: one valid, one without a boxed answer
        ["$\\boxed{10}$", "<think>a</think><think>b</think>$\\boxed{10}$"],  # c: valid, broken think block
        ["$\\boxed{12}$", "$\\boxed{}$"],                          # d: valid (but wrong), empty box
        ["$\\boxed{14}$", "$\\boxed{15}$"],                        # e: both valid, no reference to check against
    ])
    traces = engine_traces(engine, OURS, OURS, problems, SamplingConfig(n=2), teacher="scripted", dropped=dropped)
    assert [t.problem_id for t in traces] == ["a", "c", "d", "e", "e"]
    assert dropped == {"duplicate_prompt": 1, "no_boxed_answer": 2, "broken_think": 1}
    kept = keep_correct(traces, problems, dropped)
    assert [t.completion for t in kept] == ["x = 3, so $\\boxed{3}$.", "$\\boxed{10}$", "$\\boxed{14}$", "$\\boxed{15}$"]
    assert dropped["incorrect"] == 1
    # raw prompts: the release layout moves the prompt's trailing newline into the completion
    assert released_format(kept, OURS)[0] == {"prompt": "Problem:\nSolve for $x$: $7x -4 = 2x +11$.\nSolution:",
                                              "completion": "\nx = 3, so $\\boxed{3}$."}


def test_oracle_traces_solve_what_the_domain_knows():
    dropped = Counter()
    traces = oracle_traces(unique_prompts(PROBLEMS, dropped), OURS, dropped)
    assert [(t.problem_id, t.meta["answer"]) for t in traces] == [("a", "3"), ("c", "10"), ("e", "14")]
    assert dropped == {"duplicate_prompt": 1, "oracle_unsolved": 1}
    assert all(t.completion.endswith("$\\boxed{%s}$." % t.meta["answer"]) for t in traces)
