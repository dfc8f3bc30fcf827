"""End to end through the real CLI: the debug experiment, a real MLflow store, resume, kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, promptcot

pytestmark = pytest.mark.slow
DEBUG = str(REPO / "experiments/debug/tiny.yaml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("work")
    cache = f"model.cache_dir={cwd / 'cache'}"
    proc = promptcot("run", DEBUG, cache, cwd=cwd, check=True)
    return cwd, cache, proc


def test_run_prints_run_dir_mlflow_id_and_improved_nll(finished):
    cwd, _, proc = finished
    assert f"run directory: {cwd / 'runs/tiny/main'}" in proc.stdout
    assert "MLflow run id: " in proc.stdout
    run_dir = cwd / "runs/tiny/main"
    for path in ("config.yaml", "seed/triples.jsonl", "seed/train.jsonl", "seed/heldout.jsonl", "seed/DONE",
                 "coldstart/rationale_model/model/config.json", "coldstart/prompt_model/model/model.safetensors",
                 "coldstart/DONE"):
        assert (run_dir / path).is_file(), path
    metrics = json.loads((run_dir / "coldstart/DONE").read_text())
    for m in ("q", "p"):
        assert metrics[f"coldstart/{m}_nll_heldout"] < metrics[f"coldstart/{m}_nll_heldout_init"] - 1.5
        assert f"coldstart/{m}_nll_heldout" in proc.stdout
    assert not (run_dir / "coldstart/prompt_model/checkpoints").exists()  # resume state removed once exported


def test_solver_synth_and_analyze_outputs(finished):
    cwd, _, proc = finished
    run_dir = cwd / "runs/tiny/main"
    assert (run_dir / "solver/fit/model/model.safetensors").is_file()
    assert len((run_dir / "synth/concept_sets.jsonl").read_text().splitlines()) == 12
    for generator in ("em", "coldstart"):
        funnel = json.loads((run_dir / f"synth/{generator}/funnel.json").read_text())
        counts = [funnel["counts"][k] for k in ("generated", "parsed", "unique", "near_unique", "not_degenerate",
                                                "decontaminated", "kept")]
        assert counts[0] == 12 * 2 and counts == sorted(counts, reverse=True)
        assert sum(funnel["dropped"].values()) >= counts[0] - counts[-1]  # every drop has a reason
        assert f"synth/{generator} funnel: generated 24 → parsed" in proc.stdout
    assert (run_dir / "synth/problems.jsonl").read_text() == (run_dir / "synth/em/problems.jsonl").read_text()
    assert "difficulty and diversity of the problem sets" in proc.stdout and "| seed |" in proc.stdout
    for name in ("table.md", "metrics.json", "set_distances.json", "sets_mds.png"):
        assert (run_dir / "analyze" / name).stat().st_size > 0


def test_mlflow_holds_parent_nested_stages_params_and_curves(finished):
    from mlflow.tracking import MlflowClient

    cwd, _, proc = finished
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.artifact_location == (cwd / "mlflow/artifacts").as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    parent = runs["tiny/main"]
    assert parent.info.run_id in proc.stdout and parent.info.status == "FINISHED"
    assert parent.data.params["coldstart.epochs"] == "4" and parent.data.params["domain.name"] == "math"
    assert runs["seed"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert runs["coldstart"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert "coldstart/p_nll_heldout" in runs["coldstart"].data.metrics
    fit = runs["coldstart.prompt_model"]
    assert fit.data.tags["mlflow.parentRunId"] == runs["coldstart"].info.run_id
    losses = client.get_metric_history(fit.info.run_id, "train/loss")
    assert len(losses) >= 3 and losses[-1].value < losses[0].value
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["config.yaml"]
    assert {"table.md", "sets_mds.png"} <= {a.path for a in client.list_artifacts(runs["analyze"].info.run_id)}
    # run accounting: every stage's cost, on its MLflow run, in accounting.json and in the printed summary
    cold = runs["coldstart"].data.metrics
    assert cold["coldstart/accounting/wall_s"] > 0 and cold["coldstart/accounting/trained_tokens"] > 1000
    assert cold["coldstart/accounting/peak_rss_gb"] > 0.1 and cold["coldstart/accounting/generated_tokens"] == 0
    synth = runs["synth"].data.metrics
    assert synth["synth/accounting/generated_tokens"] > 100 and synth["synth/accounting/generated_tokens_per_s"] > 0
    assert json.loads((cwd / "runs/tiny/main/selfplay/accounting.json").read_text())[
        "selfplay/accounting/trained_tokens"] > 0  # DPO steps (prefix-shared rows) count too
    assert "cost of coldstart" in proc.stdout and "trained " in proc.stdout
    assert not any("/accounting/" in k for k in json.loads((cwd / "runs/tiny/main/coldstart/DONE").read_text()))


def test_rerun_does_no_training_and_reattaches(finished):
    cwd, cache, first = finished
    done = cwd / "runs/tiny/main/coldstart/DONE"
    stamp = done.stat().st_mtime_ns
    again = promptcot("run", DEBUG, cache, cwd=cwd, check=True)
    assert "nothing to do" in again.stdout and "no training was run" in again.stdout
    first_id = first.stdout.split("MLflow run id: ")[1].split()[0]
    assert f"MLflow run id: {first_id}" in again.stdout
    assert done.stat().st_mtime_ns == stamp


def test_changed_config_on_same_run_dir_is_refused(finished):
    cwd, cache, _ = finished
    proc = promptcot("run", DEBUG, cache, "coldstart.epochs=5", cwd=cwd)
    assert proc.returncode == 2 and "coldstart.epochs: 4 → 5" in proc.stderr and "run_name" in proc.stderr


def test_settings_of_a_stage_that_never_started_may_change(finished, tmp_path):
    cwd, cache, _ = finished
    import shutil

    work = tmp_path / "copy"
    shutil.copytree(cwd / "runs", work / "runs")
    shutil.rmtree(work / "runs/tiny/main/analyze")
    (work / "runs/tiny/main/tracking.json").unlink()
    proc = promptcot("run", DEBUG, cache, "analyze.n_samples=1", "tracking.enabled=false", cwd=work, check=True)
    assert "stage analyze: starting" in proc.stdout and "stage synth: already done" in proc.stdout
    refused = promptcot("run", DEBUG, cache, "synth.n_concept_sets=5", "tracking.enabled=false", cwd=work)
    assert refused.returncode == 2 and "synth.n_concept_sets: 12 → 5" in refused.stderr


def test_kill_during_coldstart_then_rerun_finishes_without_redoing_seed(tmp_path):
    cache = f"model.cache_dir={tmp_path / 'cache'}"
    args = ["run", DEBUG, cache, "coldstart.epochs=40", "run_name=killed"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "promptcot_pl", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run_dir = tmp_path / "runs/tiny/killed"
    checkpoint = run_dir / "coldstart/rationale_model/checkpoints/last.ckpt"
    deadline = time.time() + 300
    while not checkpoint.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert checkpoint.is_file(), "the fit never wrote a checkpoint"
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "coldstart/DONE").exists()
    seed_stamp = (run_dir / "seed/triples.jsonl").stat().st_mtime_ns

    resumed = promptcot(*args, cwd=tmp_path, check=True)
    assert "stage seed: already done" in resumed.stdout
    assert "coldstart/rationale_model: resuming from" in resumed.stdout
    assert (run_dir / "seed/triples.jsonl").stat().st_mtime_ns == seed_stamp
    assert (run_dir / "coldstart/DONE").is_file()
    steps = json.loads((run_dir / "coldstart/rationale_model/metrics.json").read_text())["steps"]
    assert steps == 40 * 12  # 96 train triples / batch 8 = 12 steps per epoch, all of them done once


def test_every_fit_beside_an_engine_runs_with_the_engine_asleep(finished):
    """EM and self-play hold an engine through their fits: each fit and scoring pass frees it (REVIEW C4)."""
    _, _, proc = finished
    out = proc.stdout + proc.stderr
    for it in (1, 2):
        for fit in (f"em/iter_{it:03d}/rationale_model", f"em/iter_{it:03d}/prompt_model",
                    f"em/frozen/iter_{it:03d}/prompt_model"):
            assert f"engine asleep during the fit of {fit}: weights freed" in out, fit
    assert "engine asleep during scoring by coldstart/prompt_model/model: weights freed" in out
    assert "engine asleep during self-play round 1: reference scoring and DPO fit: weights freed" in out
