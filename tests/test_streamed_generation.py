"""Streamed generation (issue K): synthesis writes shard files as it goes; `kill -9` mid-generation,
rerun, and the finished shards are reused as they are, the missing ones generated, and the problems equal an
uninterrupted run's. Through the real CLI on the debug experiment."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, promptcot

pytestmark = pytest.mark.slow
DEBUG = str(REPO / "experiments/debug/tiny.yaml")


def test_killed_synthesis_resumes_from_its_finished_shards(tmp_path):
    args = [DEBUG, f"model.cache_dir={tmp_path / 'cache'}", "stages=[seed,coldstart,solver,synth]",
            "coldstart.epochs=1", "solver.epochs=1", "synth.generators=[coldstart]", "synth.n_concept_sets=120",
            "engine.shard_prompts=3", "tracking.enabled=false"]
    promptcot("run", *args, cwd=tmp_path, check=True, timeout=900)
    synth = tmp_path / "runs/tiny/main/synth"
    shards = synth / "coldstart/generated"
    assert len(list(shards.glob("shard_*.jsonl"))) == 40
    whole = {p.name: p.read_text() for p in shards.glob("shard_*.jsonl")}
    problems = (synth / "problems.jsonl").read_text()
    concept_sets = (synth / "concept_sets.jsonl").read_text()
    shutil.rmtree(synth)

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "promptcot_pl", "stage", "synth", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while len(list(shards.glob("shard_*.jsonl"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard_*.jsonl")}
    assert 3 <= len(finished) < 40, f"{len(finished)} shards when killed"
    assert not (synth / "DONE").exists()

    resumed = promptcot("stage", "synth", *args, cwd=tmp_path, check=True, timeout=900)
    assert f"{len(finished)} of 40 shards already written" in resumed.stdout + resumed.stderr
    for name, stamp in finished.items():  # reused as they were, not regenerated
        assert (shards / name).stat().st_mtime_ns == stamp
    assert {p.name: p.read_text() for p in shards.glob("shard_*.jsonl")} == whole
    assert (synth / "concept_sets.jsonl").read_text() == concept_sets
    assert (synth / "problems.jsonl").read_text() == problems
