"""One run directory, one writer: a second `promptcot run` into a live run's directory exits at once naming the
directory and the holder's PID; the lock of a `kill -9`ed run is recovered by the next run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, promptcot

pytestmark = pytest.mark.slow
DEBUG = str(REPO / "experiments/debug/tiny.yaml")


def test_second_writer_is_refused_and_a_killed_holders_lock_is_recovered(tmp_path):
    args = ["run", DEBUG, f"model.cache_dir={tmp_path / 'cache'}", "coldstart.epochs=200"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    holder = subprocess.Popen([sys.executable, "-m", "promptcot_pl", *args], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run_dir = tmp_path / "runs/tiny/main"
    lock = run_dir / ".lock"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and holder.poll() is None and not (
                lock.is_file() and f"pid {holder.pid} " in lock.read_text()):
            time.sleep(0.1)
        assert holder.poll() is None, "the first run ended before the test could race it"
        config_before = (run_dir / "config.yaml").read_bytes() if (run_dir / "config.yaml").is_file() else None

        start = time.monotonic()
        second = promptcot(*args, cwd=tmp_path, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"{run_dir}: the run directory is in use by another promptcot run (pid {holder.pid} on " in second.stderr
        assert time.monotonic() - start < 60  # at once: before any model is loaded
        if config_before is not None:
            assert (run_dir / "config.yaml").read_bytes() == config_before  # it wrote nothing
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()

    # the kernel released the dead holder's lock: the next run (a cheap one: the seed stage only) takes it
    third = promptcot(*args, "stages=[seed]", cwd=tmp_path, timeout=300, check=True)
    assert "in use" not in third.stderr and (run_dir / "seed/DONE").is_file()
    assert lock.read_text().startswith("pid ") and f"pid {holder.pid} " not in lock.read_text()
