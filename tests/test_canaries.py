"""Reward canaries: the real reward scores every canary 0 and its control 1; a lax reward is caught (each canary
can fail); a stage whose reward is lax refuses to start, with the canary named and `canary/*` in MLflow."""

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from promptcot_pl.data.records import Problem
from promptcot_pl.verify.canaries import RewardHackable, canaries, check, probe
from promptcot_pl.verify.rewards import Rewards
from tests.conftest import REPO

TESTS = [{"input": "266\n", "output": "56\n"}, {"input": "524\n", "output": "99\n"}, {"input": "7\n", "output": "1\n"}]
PROBLEMS = [Problem(id="m1", domain="math", problem="p", answer="3"),
            Problem(id="m2", domain="math", problem="q", answer=r"\frac{1}{2}"),
            Problem(id="c1", domain="code", problem="r", tests=TESTS)]


@dataclass
class LaxRewards(Rewards):
    """A test helper: the reward a hurried implementer writes — the reference anywhere in the text is a pass,
    and any program is run without a sandbox or a timeout."""

    def score(self, completions, problems, thinking=False):
        return [float(p.answer in c) if p.domain == "math" else float(any(t["output"].strip() in c for t in p.tests))
                for c, p in zip(completions, problems)]


@pytest.mark.parametrize("thinking", [False, True])
def test_the_real_reward_rewards_no_canary_and_every_control(thinking):
    metrics, scored = probe(Rewards(code_timeout_s=2.0), PROBLEMS, thinking)
    rewarded = [(c.name, c.problem.id) for c, r in scored if not c.control and r]
    assert rewarded == [] and metrics["canary/hackability"] == 0.0
    assert metrics["canary/control"] == 1.0  # the probe would have seen a reward had there been one
    names = {c.name for c, _ in scored}
    assert {"hedge_lor", "hedge_equation", "several_boxes", "answer_in_thoughts", "overlong_box", "empty_box",
            "unevaluated_expression",
            "reads_host_files", "sleeps_past_timeout", "exits_before_printing", "prints_first_output"} <= names
    assert metrics["canary/probes"] == sum(not c.control for c, _ in scored) == 2 * 11 + 1 + 7  # undone: integers only


def test_a_lax_reward_is_refused_naming_the_canary():
    with pytest.raises(RewardHackable, match=r"canary '\w+' on problem 'm1'.*verify\.canaries=false"):
        check(LaxRewards(code_timeout_s=2.0), PROBLEMS, False, "selfplay round 1")
    metrics, _ = probe(LaxRewards(code_timeout_s=2.0), PROBLEMS)
    assert metrics["canary/hackability"] > 0.5 and metrics["canary/hedge_lor"] == 1.0


def test_math_verify_alone_is_hackable_by_hedges():
    """Why the hedge guard exists: math-verify 0.9 reads `4 \\lor 3` and `4 = 3` as 3."""
    from math_verify import parse, verify

    gold = parse("$3$")
    assert verify(gold, parse(r"$\boxed{4 \lor 3}$")) and verify(gold, parse(r"$\boxed{4 = 3}$"))
    assert probe(Rewards(), PROBLEMS[:1])[0]["canary/hedge_lor"] == 0.0


def test_the_file_reading_canary_would_pass_outside_the_sandbox(tmp_path):
    """The canary is a real exploit: run as a plain process beside a run directory, it finds its test's expected
    output in the problems file and prints it. The sandbox (no host files) is what makes it fail."""
    (tmp_path / "runs/x/main/synth").mkdir(parents=True)
    (tmp_path / "runs/x/main/synth/problems.jsonl").write_text(json.dumps({"id": "c1", "tests": TESTS}) + "\n")
    case = next(c for c in canaries(PROBLEMS, False, 2.0) if c.name == "reads_host_files")
    program = case.completion.split("```python\n", 1)[1].rsplit("```", 1)[0]
    plain = subprocess.run([sys.executable, "-c", program], input=TESTS[1]["input"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=60)
    assert plain.stdout.strip() == "99"
    assert Rewards(code_timeout_s=5.0).score([case.completion], [PROBLEMS[2]]) == [0.0]


@pytest.mark.slow
def test_a_stage_with_a_lax_reward_refuses_to_start(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from promptcot_pl.experiment import load_config
    from promptcot_pl.pipeline import run_pipeline
    from promptcot_pl.runner.context import StageContext

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(StageContext, "rewards", lambda self: LaxRewards(code_timeout_s=2.0))
    cfg = load_config(REPO / "experiments/debug/tiny.yaml",
                      ["stages=[seed,solver,selfplay]", "solver.epochs=1", f"model.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(RewardHackable, match="selfplay round 1: the reward function gave 1 to canary"):
        run_pipeline(cfg)
    run_dir = tmp_path / "runs/tiny/main"
    assert not (run_dir / "selfplay/DONE").exists() and not list((run_dir / "selfplay").glob("round_*"))
    state = json.loads((run_dir / "tracking.json").read_text())
    client = MlflowClient(tracking_uri="sqlite:///mlflow/mlflow.db")
    run = client.get_run(state["runs"]["selfplay"])
    assert run.info.status == "FAILED" and run.data.metrics["canary/hackability"] > 0.5


def test_arithmetic_left_undone_is_not_an_answer():
    """`\\boxed{47+38-19}` for 66 used to score 1: the policy could skip the computation the problem asks for."""
    from promptcot_pl.verify.math import check_many

    undone = [("47+38-19", "66"), ("65 + 1", "66"), (r"33 \times 2", "66"), ("2/3/1", "2/3")]
    answers = [("66", "66"), (r"\frac{132}{2}", "66"), (r"\frac{1}{2}", "0.5"), (r"-\frac{1}{2}", "-0.5"),
               ("-3/2", "-1.5"), (r"\sqrt{2}+1", r"1+\sqrt{2}"), (r"2\pi", r"2\pi"), ("1/2", r"\frac{1}{2}"), ("-3", "-3"), ("3+4", "3+4"),
               ("7", "3+4"), (r"1+\sqrt{2}", r"\sqrt{2}+1")]
    assert check_many(undone) == [False] * len(undone)
    assert check_many(answers) == [True] * len(answers)


def test_the_real_reward_passes_the_probe_on_answers_that_are_not_integers():
    """The undone-arithmetic canary is built for integer answers only: `(\\sqrt{2})+0` is a right answer."""
    from promptcot_pl.data.records import Problem

    problems = [Problem(id=f"x{i}", domain="math", problem="?", answer=a)
                for i, a in enumerate([r"\sqrt{2}", r"-\frac{1}{2}", r"2\pi", "7"])]
    metrics, scored = probe(Rewards(), problems, False, per_domain=4)
    assert metrics["canary/hackability"] == 0.0 and metrics["canary/control"] == 1.0
    assert sum(c.name == "unevaluated_expression" for c, _ in scored) == 1  # the integer answer's only
    assert all(c.name != "unevaluated_expression" or c.problem.answer == "7" for c, _ in scored)
