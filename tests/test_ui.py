import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_project_store_on_loopback(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "promptcot_pl", "ui", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline, body = time.time() + 90, None
        while time.time() < deadline and proc.poll() is None and body is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
        assert body == "OK", proc.stdout.read() if proc.poll() is not None else "no answer from /health"
        assert (tmp_path / "mlflow/mlflow.db").is_file() and (tmp_path / "mlflow/artifacts").is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
