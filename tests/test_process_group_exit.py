"""Leaving `distributed.joined()` frees the process group and joins its worker threads while Python is alive.

Why: a gloo worker thread that outlives the script drops its last collective's tensors during the interpreter's
teardown, cannot take the GIL there, and aborts the process (SIGABRT, "terminate called without an active
exception") after a run that succeeded — one 2-process CI run in about seven. The group survived because
torch.distributed.nn.functional, imported with Lightning after the group existed, held it in its functions' default
arguments. Counting threads makes the check deterministic; the abort itself is a race. The FSDP and scale-out tests
check that `shutdown` never warned that the group outlived it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptcot_pl import distributed
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts threads in /proc (Linux)")


def test_leaving_the_group_joins_its_threads(tmp_path):
    out = tmp_path / "threads.json"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(REPO / "tests/process_group_exit.py"), str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert distributed.KEPT not in proc.stderr
    report = json.loads(out.read_text())
    assert report["received"] == 0 and not report["initialized"]
    assert not report["group_alive"], report
    assert report["started"] > 0 and report["ended"] == report["started"], report  # its threads are gone
