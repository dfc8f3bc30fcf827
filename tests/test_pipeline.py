"""End to end through the real CLI: the debug experiment, a real MLflow store, resume, kill -9."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, _descendants, promptcot

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
    assert not (run_dir / "coldstart/prompt_model/checkpoints").exists()  # resume state removed once exported
    # the console reports each fit's held-out NLL; the numbers are in DONE files and MLflow, not dumped at the end
    assert re.search(r"coldstart/prompt_model: held-out NLL per token [\d.]+ → [\d.]+ \(\d+ steps\)", proc.stdout)
    assert re.search(r"done: \d+ metrics of \d+ stages", proc.stdout) and "  coldstart/p_nll_heldout" not in proc.stdout


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
    assert "stage coldstart: " in proc.stdout and "trained " in proc.stdout
    assert not any("/accounting/" in k for k in json.loads((cwd / "runs/tiny/main/coldstart/DONE").read_text()))


def test_mlflow_opens_as_model_training_with_every_exported_model_and_its_lineage(finished):
    from mlflow.tracking import MlflowClient

    cwd, _, _ = finished
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI view
    models = {m.name: m for m in client.search_logged_models([experiment.experiment_id])}
    run_dir = cwd / "runs/tiny/main"
    expected = {"coldstart-rationale_model-model", "coldstart-prompt_model-model", "solver-fit-model",
                "em-iter_001-rationale_model", "em-iter_001-prompt_model", "selfplay-round_001-model"}
    assert expected <= set(models), sorted(models)
    em = models["em-iter_001-prompt_model"]
    assert em.params["em_iteration"] == "1" and em.params["stage"] == "em" and em.params["seed"] == "0"
    assert em.params["path"] == str((run_dir / "em/iter_001/prompt_model").resolve())
    assert len(em.params["training_data_sha1"]) == 16 and em.status.name == "READY"
    runs = {r.info.run_id: r.info.run_name for r in client.search_runs([experiment.experiment_id])}
    assert runs[models["selfplay-round_001-model"].source_run_id] == "selfplay.round_1"
    assert models["selfplay-round_001-model"].params["selfplay_round"] == "1"
    # each fit names the data it trained on: a dataset input of its run (the runs table's Dataset column), whose
    # name and digest the model's lineage carries
    solver = models["solver-fit-model"]
    (data,) = client.get_run(solver.source_run_id).inputs.dataset_inputs
    assert (data.dataset.name, data.dataset.digest) == ("solver/fit", solver.params["training_data_sha1"])
    assert solver.params["training_data"] == "solver/fit"
    assert json.loads(data.dataset.source)["uri"] == str((run_dir / "seed/train.jsonl").resolve())
    assert {(t.key, t.value) for t in data.tags} == {("mlflow.data.context", "training")}
    assert json.loads(data.dataset.profile)["num_rows"] > 0
    (pairs,) = client.get_run(models["selfplay-round_001-model"].source_run_id).inputs.dataset_inputs
    assert json.loads(pairs.dataset.source)["uri"].endswith("selfplay/round_001/pairs.jsonl")


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


STAGES = ["seed", "coldstart", "em", "solver", "synth", "analyze", "sft", "selfplay"]
# Values that measure the machine, not the method: compared by presence and step, not by value.
TIMING = re.compile(r"/accounting/|_per_s$|wall|rss|seconds|_time")


def _run_until_killed(args: list[str], cwd: Path, stage: str, delay: float) -> bool:
    """Start `promptcot *args`, SIGKILL its process tree `delay` s after its log says `stage` started. True if the
    stage had started and was still unfinished (no DONE) when the kill landed."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "promptcot_pl", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    started = threading.Event()

    def watch():  # keeps draining the pipe after the marker, so the run never blocks on a full pipe
        for line in proc.stdout:
            if f"stage {stage}: starting" in line:
                started.set()

    threading.Thread(target=watch, daemon=True).start()
    assert started.wait(300) or proc.poll() is not None, f"stage {stage} never started"
    time.sleep(delay)
    for pid in [*_descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    return started.is_set() and not (cwd / "runs/tiny/main" / stage / "DONE").exists()


def _histories(cwd: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(run name, metric) → [(step, value)] of every run in the store, each history sorted by step."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    out = {}
    for run in client.search_runs([experiment.experiment_id]):
        for key in run.data.metrics:
            points = client.get_metric_history(run.info.run_id, key)
            out[(run.info.run_name, key)] = sorted((m.step, m.value) for m in points)
    return out


def _histories_runs(cwd: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'mlflow/mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("tiny").experiment_id])


def test_kill_9_inside_every_stage_then_rerun_equals_the_uninterrupted_run(finished, tmp_path):
    """Chaos: one `kill -9` inside each stage of the debug pipeline (watching the log for the stage's start, then a
    random delay within the stage's uninterrupted wall time), each time rerunning the same command — which
    resumes the killed stage and is killed in the next. The DONE metrics must equal the uninterrupted run's
    exactly (same seed, CPU, deterministic resume: any difference is a resume bug, not noise) and every MLflow
    curve must have the same points — one per step, none doubled — with the same values (timings aside)."""
    base_cwd = finished[0]
    base = base_cwd / "runs/tiny/main"
    wall = {s: json.loads((base / s / "accounting.json").read_text())[f"{s}/accounting/wall_s"] for s in STAGES}
    args = ["run", DEBUG, f"model.cache_dir={tmp_path / 'cache'}"]
    rng = random.Random(0)
    killed = {}
    for stage in STAGES:
        for attempt in range(4):
            if (tmp_path / "runs/tiny/main" / stage / "DONE").exists():
                # it finished before the kill landed (a sub-second stage, or one that ran faster than in the
                # uninterrupted run): remove it and run it again from nothing, killed sooner — same inputs, same
                # seed, so its results must still equal the uninterrupted run's
                shutil.rmtree(tmp_path / "runs/tiny/main" / stage)
            delay = rng.uniform(0.05, 0.7) * wall[stage] / 2 ** attempt
            if _run_until_killed(args, tmp_path, stage, delay):
                killed[stage] = round(delay, 2)
                break
    final = promptcot(*args, cwd=tmp_path, check=True)
    assert "stage seed: already done" in final.stdout
    assert set(killed) == set(STAGES), f"kills inside {killed}; finished before the kill: {set(STAGES) - set(killed)}"
    for stage in STAGES:
        assert json.loads((tmp_path / "runs/tiny/main" / stage / "DONE").read_text()) == \
            json.loads((base / stage / "DONE").read_text()), stage
    ours, theirs = _histories(tmp_path), _histories(base_cwd)
    assert set(ours) == set(theirs)
    for key, points in theirs.items():
        mine = ours[key]
        assert [s for s, _ in mine] == [s for s, _ in points], f"{key}: steps differ (a doubled or lost point)"
        if not TIMING.search(key[1]):
            assert [v for _, v in mine] == [v for _, v in points], key
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parents = [r for r in runs if r.info.run_name == "tiny/main"]
    state = json.loads((tmp_path / "runs/tiny/main/tracking.json").read_text())
    assert [r.info.run_id for r in parents] == [state["runs"]["parent"]]  # the same parent through 9 processes
    assert len(runs) == len(_histories_runs(base_cwd)) and all(r.info.status == "FINISHED" for r in runs)


def test_every_fit_beside_an_engine_runs_with_the_engine_asleep(finished):
    """EM and self-play hold an engine through their fits: each fit and scoring pass frees it."""
    cwd, _, proc = finished
    out = proc.stdout + proc.stderr
    em = cwd / "runs/tiny/main/em"
    # every checkpoint an EM iteration wrote was fitted beside the engine (an M-step without a valid z̃ writes none)
    fits = sorted(str(path.relative_to(em.parent)) for path in em.glob("**/iter_*/*_model"))
    assert {"em/iter_001/rationale_model", "em/iter_001/prompt_model"} <= set(fits)
    # the frozen variant's greedy z̃ can all be cut off on another CPU's numerics (CI's were): then it says so
    assert "em/frozen/iter_001/prompt_model" in fits or \
        "em (frozen rationales) iteration 1: none of" in out, "the frozen variant neither fitted nor said why"
    # each release is in the run's log file; the console has one line per EM iteration or self-play round
    details = (cwd / "runs/tiny/main/run.log").read_text()
    for fit in fits:
        assert f"engine asleep during the fit of {fit}: weights freed" in details, fit
    assert "engine asleep during scoring by coldstart/prompt_model/model: weights freed" in details
    assert "engine asleep during self-play round 1: reference scoring and DPO fit: weights freed" in details
    assert "weights freed" not in out
    assert re.search(r"em iteration 1: iwae .*; engine asleep during 2 fits and \d+ scoring passes", out), out
    assert re.search(r"selfplay round 1: held-out accuracy .*; engine asleep during 1 fit", out), out


def test_a_failed_start_leaves_no_run_directory_and_no_failed_mlflow_run(finished):
    from mlflow.tracking import MlflowClient

    cwd, cache, _ = finished
    proc = promptcot("run", DEBUG, cache, "run_name=nostart", "stages=[coldstart]", cwd=cwd)
    assert proc.returncode == 2 and "stage 'seed' has not finished" in proc.stderr, proc.stderr[-2000:]
    assert not (cwd / "runs/tiny/nostart").exists()
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow/mlflow.db'}")
    names = {r.info.run_name for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])}
    assert "tiny/nostart" not in names and "tiny/main" in names
