"""Faults of the surroundings: a real `mlflow server` on 127.0.0.1 that goes away mid-run and comes back (the run
goes on; every metric reaches the server, none doubled), one that is not there with `tracking.strict=true` (the
run stops before any work, naming the server), and an unwritable run directory (an error naming the path)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, promptcot

pytestmark = pytest.mark.slow
DEBUG = str(REPO / "experiments/debug/tiny.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(root: Path, port: int) -> subprocess.Popen:
    """A real tracking server with its own sqlite store and proxied artifacts, answering /health."""
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read() == b"OK":
                return proc
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("mlflow server did not answer /health")


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the server's workers go with it: the port stops answering at once
    proc.wait()


def test_server_away_mid_run_then_back_loses_no_metric(tmp_path):
    port = _free_port()
    server = _server(tmp_path, port)
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    args = ["run", DEBUG, f"model.cache_dir={tmp_path / 'cache'}", "stages=[seed,coldstart]", "coldstart.epochs=12"]
    run = subprocess.Popen([sys.executable, "-m", "promptcot_pl", *args], cwd=tmp_path, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    started = threading.Event()

    def watch():
        for line in run.stdout:
            lines.append(line)
            if "stage coldstart: starting" in line:
                started.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert started.wait(300), "".join(lines)
        _stop(server)  # away while the fits log their steps and the stage run is created
        time.sleep(8)
        assert run.poll() is None, "the run stopped when the server went away:\n" + "".join(lines)
        server = _server(tmp_path, port)  # back, same store
        assert run.wait(600) == 0, "".join(lines)
        watcher.join(10)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        _stop(server)
        server = None
    out = "".join(lines)
    assert "stopped answering" in out and "answers again" in out, out
    run_dir = tmp_path / "runs/tiny/main"
    assert not (run_dir / "tracking_outbox.jsonl").exists()  # everything was delivered

    server = _server(tmp_path, port)
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])}
        assert {"tiny/main", "seed", "coldstart", "coldstart.prompt_model", "coldstart.rationale_model"} <= set(runs)
        assert all(r.info.status == "FINISHED" for r in runs.values())
        done = json.loads((run_dir / "coldstart/DONE").read_text())
        assert runs["coldstart"].data.metrics["coldstart/p_nll_heldout"] == done["coldstart/p_nll_heldout"]
        for fit in ("coldstart.prompt_model", "coldstart.rationale_model"):
            steps = [m.step for m in client.get_metric_history(runs[fit].info.run_id, "train/loss")]
            total = json.loads((run_dir / "coldstart" / fit.split(".")[1] / "metrics.json").read_text())["steps"]
            # one point every log_every_n_steps (2), none lost while the server was away, none doubled
            assert steps == sorted(set(steps)) and len(steps) == total // 2, (fit, steps, total)
    finally:
        _stop(server)


def test_strict_tracking_without_a_server_stops_before_any_work(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "promptcot_pl", "run", DEBUG, "tracking.strict=true",
                           f"tracking.uri={uri}", f"model.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"tracking server {uri} does not answer" in proc.stderr and "tracking.strict=true" in proc.stderr
    assert time.monotonic() - start < 120
    assert not (tmp_path / "runs/tiny/main/seed").exists()  # no stage ran


def test_an_unwritable_run_directory_is_named(tmp_path):
    blocked = tmp_path / "runs"
    blocked.write_text("a file where the run directories should go")  # unwritable as a directory, even for root
    proc = promptcot("run", DEBUG, f"model.cache_dir={tmp_path / 'cache'}", "tracking.enabled=false", cwd=tmp_path)
    assert proc.returncode != 0
    assert str(blocked) in proc.stderr or "runs/tiny/main" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root to mount a small tmpfs")
def test_a_full_disk_is_named_and_nothing_half_written_counts_as_done(tmp_path):
    """The run directory on a 1 MiB filesystem (a tmpfs in a private mount namespace): the seed stage fits, the
    cold start's model does not. The run stops naming the path; seed stays DONE, coldstart has no DONE; grown to
    256 MiB, the same command resumes and finishes the cold start without redoing seed."""
    small = tmp_path / "small"
    small.mkdir()
    cmd = " ".join([sys.executable, "-m", "promptcot_pl", "run", DEBUG, f"model.cache_dir={tmp_path / 'cache'}",
                    f"output_dir={small}", "tracking.enabled=false", "stages=[seed,coldstart]"])
    run = small / "tiny/main"
    script = (f"mount -t tmpfs -o size=1m tmpfs {small} || exit 9\n{cmd}; echo first-rc=$?\n"
              f"test -f {run}/seed/DONE && echo seed-done\ntest -f {run}/coldstart/DONE && echo coldstart-done\n"
              f"mount -o remount,size=256m {small} && {cmd} && test -f {run}/coldstart/DONE && echo resumed-done\n")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 9, out
    named = [line for line in out.splitlines() if line.startswith("promptcot: cannot write ")]
    assert "first-rc=1" in out and named and f"{run}/" in named[0] and "No space left on device" in named[0], out
    assert "Traceback" not in out, out
    assert "seed-done" in out and "coldstart-done" not in out, out
    assert "resumed-done" in out and "stage seed: already done" in out, out
    # the checkpoint cut mid-copy is recognised, not resumed from (it crashed every rerun before)
    assert "is incomplete (cut while being written): the fit starts over" in out or "resuming from" in out, out
