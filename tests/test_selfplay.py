"""Self-play end to end on the debug experiment (the policy practises on the seed's training problems): round
outputs, MLflow metrics, and a run killed during round 2 that resumes to the same result as an uninterrupted one."""

import json

import pytest
import torch
from safetensors.torch import load_file

from promptcot_pl.data.jsonl import read_jsonl
from promptcot_pl.data.records import Pair, Rollout
from tests.conftest import REPO, kill_when, promptcot

pytestmark = pytest.mark.slow
DEBUG = str(REPO / "experiments/debug/tiny.yaml")
STAGES = "stages=[seed,solver,selfplay]"


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("selfplay")
    cache = f"model.cache_dir={cwd / 'cache'}"
    proc = promptcot("run", DEBUG, cache, STAGES, "run_name=straight", cwd=cwd, check=True)
    return cwd, cache, proc


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "selfplay/history.jsonl").read_text().splitlines()]


def test_rounds_write_rollouts_pairs_models_and_accuracy(straight):
    cwd, _, proc = straight
    stage = cwd / "runs/tiny/straight/selfplay"
    history = _history(cwd / "runs/tiny/straight")
    assert [h["round"] for h in history] == [0, 1, 2]
    trained = 0
    for r in (1, 2):
        out = stage / f"round_{r:03d}"
        rollouts = read_jsonl(out / "rollouts.jsonl", Rollout)
        assert len(rollouts) == 12 * 8
        pairs = read_jsonl(out / "pairs.jsonl", Pair)
        released = [json.loads(line) for line in (out / "pairs_released.jsonl").read_text().splitlines()]
        # the release's layout: the ChatML prompt ends at the assistant header, its newline opens the completion
        assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
            (x["prompt"] + "\n", x["chosen"][1:], x["rejected"][1:]) for x in released]
        assert all(x["prompt"].endswith("<|im_start|>assistant") and x["chosen"].startswith("\n")
                   and x["source"] == "OpenSource-Math" for x in released)  # the debug run practises on seed
        by_text = {x.text: x for x in rollouts}
        assert all(by_text[p.chosen].reward == 1.0 and by_text[p.rejected].reward == 0.0 for p in pairs)
        assert history[r]["selfplay/pairs"] == len(pairs)
        if pairs:
            trained += 1
            assert (out / "model/model.safetensors").is_file()
            # the last epoch's means and the round-end pass over every pair
            assert {"selfplay/epoch/rewards_margin", "train/epoch/loss", "selfplay/end/logps_chosen",
                    "selfplay/end/rewards_accuracy"} <= set(history[r])
    assert trained >= 1, "the debug policy found no pair in any round"
    assert (stage / "accuracy.png").stat().st_size > 0
    assert "selfplay round 1: 12 problems × 8 rollouts" in proc.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'mlflow/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    (stage_run,) = [r for r in runs if r.info.run_name == "selfplay"]
    steps = [m.step for m in client.get_metric_history(stage_run.info.run_id, "selfplay/accuracy_heldout")]
    assert sorted(steps) == [0, 1, 2]
    assert "accuracy.png" in {a.path for a in client.list_artifacts(stage_run.info.run_id)}
    fits = [r for r in runs if r.info.run_name.startswith("selfplay.round_")]
    assert fits and all("train/loss" in r.data.metrics and "selfplay/rewards_accuracy" in r.data.metrics for r in fits)


def test_a_killed_round_resumes_to_the_uninterrupted_result(straight):
    cwd, cache, _ = straight
    args = ["run", DEBUG, cache, STAGES, "run_name=resumed"]
    kill_when(args, cwd, cwd / "runs/tiny/resumed/selfplay/round_002/rollouts.jsonl")
    assert not (cwd / "runs/tiny/resumed/selfplay/round_002/DONE").exists()
    resumed = promptcot(*args, cwd=cwd, check=True)
    assert "selfplay round 1:" not in resumed.stdout  # the finished round is not redone
    straight_history, resumed_history = _history(cwd / "runs/tiny/straight"), _history(cwd / "runs/tiny/resumed")
    assert len(resumed_history) == len(straight_history) == 3
    for a, b in zip(straight_history, resumed_history):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], abs=1e-5), key
    final = [cwd / f"runs/tiny/{name}/selfplay/round_002/policy.txt" for name in ("straight", "resumed")]
    models = [load_file(p.parents[2] / p.read_text().strip() / "model.safetensors") for p in final]
    assert models[0].keys() == models[1].keys()
    for name in models[0]:
        torch.testing.assert_close(models[0][name], models[1][name], atol=1e-6, rtol=0)
