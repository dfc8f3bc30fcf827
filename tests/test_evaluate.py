"""Stage `evaluate` on the release's file formats (small hand-made files in tests/data/: a math file with
chat-rendered prompts and `#### answer` solutions, a Codeforces-style file with `input_output`): the chat wrapper
is removed and the problem re-rendered for the evaluated model; accuracy and pass@1 are computed with the right
counts. A scripted policy gives known answers (what is under test is reading, rendering, grading, counting); the
end-to-end run evaluates the tiny solver through the CLI."""

import json
from pathlib import Path

import pytest

from promptcot_pl.data.released import read_eval_rows
from promptcot_pl.experiment import load_config
from promptcot_pl.runner.context import StageContext
from promptcot_pl.stages.evaluate import loop as evaluate
from tests.conftest import REPO, ScriptedEngine, promptcot

DATA = Path(__file__).parent / "data"
MATH, CODE = DATA / "release_math_eval.jsonl", DATA / "release_code_eval.jsonl"
SUM = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
SQUARE, WRONG = "```python\nn = int(input())\nprint(n * n)\n```", "```python\nprint(9)\n```"


def test_release_eval_files_are_unwrapped_to_bare_problems():
    math = read_eval_rows(MATH)
    assert [(p.problem, p.answer, p.domain) for p in math] == [
        ("What is $2+3$?", "5", "math"), ("Compute $1^2+2^2+\\dots+3^2$.", "14", "math"),
        ("How many positive divisors does $12$ have?", "6", "math")]
    code = read_eval_rows(CODE)
    assert [p.problem for p in code] == ["Read two integers a and b and print their sum.",
                                         "Read an integer n and print n squared."]
    assert code[1].tests == [{"input": "3\n", "output": "9\n"}, {"input": "4\n", "output": "16\n"}]


def test_a_malformed_eval_row_names_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "x", "answer": "1"}\n{"prompt": "q", "input_output": "{not json"}\n')
    from promptcot_pl.data.jsonl import JsonlError

    with pytest.raises(JsonlError, match=r"bad.jsonl:2: field 'input_output'"):
        read_eval_rows(bad)


def test_accuracy_and_pass_at_1_with_the_right_counts(tiny_dir, tmp_path, monkeypatch):
    cfg = load_config(None, [f"evaluate.sets=[{MATH},{CODE}]", "evaluate.n=2", f"evaluate.model={tiny_dir}",
                             "evaluate.max_new_tokens=64",
                             "stages=[evaluate]"])
    answers = iter([
        [["$\\boxed{5}$", "$\\boxed{6}$"], ["$\\boxed{14}$", "no idea"], ["$\\boxed{6}$", "$\\boxed{6}$"]],  # 4 of 6
        [[SUM, SUM], [SQUARE, WRONG]],  # 3 of 4 programs pass every test
    ])
    engines = []

    def scripted(*args, **kwargs):
        engine = ScriptedEngine([])
        engine.generate = lambda prompts, sampling, e=engine, **_: (setattr(e, "outputs", next(answers)),
                                                                    ScriptedEngine.generate(e, prompts, sampling))[1]
        engine.close = lambda: None
        engines.append(engine)
        return engine

    import promptcot_pl.generation

    monkeypatch.setattr(promptcot_pl.generation, "build_engine", scripted)  # what ctx.engine builds
    ctx = StageContext(cfg=cfg, run_dir=tmp_path, stage_dir=tmp_path / "evaluate", tracker=None, run_id=None)
    metrics = evaluate.run(ctx)
    assert metrics["evaluate/release_math_eval/accuracy"] == pytest.approx(4 / 6)
    assert metrics["evaluate/release_code_eval/pass_at_1"] == pytest.approx(3 / 4)
    assert metrics["evaluate/release_math_eval/samples"] == 6 and metrics["evaluate/release_code_eval/problems"] == 2
    assert metrics["evaluate/release_math_eval/unscorable_share"] == 0.0
    # re-rendered through the evaluated model's own (ChatML) template, without the release file's <think> opening
    first = engines[0].prompts[0]
    assert first == ("<|im_start|>user\nWhat is $2+3$?\nPlease reason step by step, and put your final answer within "
                     "\\boxed{}.<|im_end|>\n<|im_start|>assistant\n")
    rows = (tmp_path / "evaluate/release_code_eval/samples.jsonl").read_text().splitlines()
    assert [json.loads(r)["reward"] for r in rows] == [1.0, 1.0, 1.0, 0.0]


@pytest.mark.slow
def test_evaluate_the_tiny_solver_through_the_cli(tmp_path):
    args = ["run", str(REPO / "experiments/debug/tiny.yaml"), "stages=[seed,coldstart,solver,evaluate]",
            f"evaluate.sets=[{MATH},{CODE}]", "evaluate.n=2", "evaluate.max_new_tokens=48", "solver.epochs=2",
            f"model.cache_dir={tmp_path / 'cache'}"]
    promptcot(*args, cwd=tmp_path, check=True)
    done = json.loads((tmp_path / "runs/tiny/main/evaluate/DONE").read_text())
    assert done["evaluate/release_math_eval/problems"] == 3 and done["evaluate/release_math_eval/samples"] == 6
    assert done["evaluate/release_code_eval/problems"] == 2 and done["evaluate/release_code_eval/samples"] == 4
    assert 0.0 <= done["evaluate/release_math_eval/accuracy"] <= 1.0
    assert 0.0 <= done["evaluate/release_code_eval/pass_at_1"] <= 1.0
    assert "evaluate/release_code_eval/unscorable_share" in done
