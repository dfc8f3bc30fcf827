"""The sandbox shows the program nothing of the host but the Python runtime: no run directory (whose
problems hold every expected output), no checkout, no HF cache, no home — not to list, read or write — as root
and as an unprivileged user; and each test of a program starts from a fresh working directory."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from promptcot_pl.verify.code import run_tests

REPO = Path(__file__).resolve().parents[1]
SETPRIV = shutil.which("setpriv")
SYSTEM_PYTHON = Path("/usr/bin/python3")

# The program reports every path it could list, read or write, then prints "sealed": it passes its one test
# (expected output "sealed") only when nothing of the host was reachable.
PROBE = """import os, sys
# the directories that lead to the interpreter itself (e.g. /root/.pyenv/… under pyenv) are all a listing may show
runtime = set(os.path.realpath(sys.executable).split('/')) | set(os.path.dirname(os.__file__).split('/'))
found = []
for path in {paths!r}:
    try:
        if os.path.isdir(path):
            shown = set(os.listdir(path)) - runtime
            if shown:
                found.append('listed ' + path + ': ' + ' '.join(sorted(shown)[:5]))
        else:
            open(path).read(1)
            found.append('read ' + path)
    except OSError:
        pass
    try:  # change a host file, or plant one in a host directory; never create the path itself (the sandbox's own
        # /tmp is writable, and a checkout under /tmp would otherwise look like a hole)
        if os.path.isdir(path):
            target = os.path.join(path, 'planted')
            open(target, 'a').write('x')
        else:
            target = path
            open(target, 'r+').write('x')
        found.append('wrote ' + target)
    except OSError:
        pass
for line in found:
    print(line)
print('sealed')
sys.stderr.write(repr(found))
"""


@pytest.fixture
def host_files():
    """World-readable files where a run, a checkout, a cache and a home keep them (under the checkout so an
    unprivileged user can reach them outside the sandbox: the test is meaningful only if it could)."""
    root = REPO / ".pytest_host_files"
    shutil.rmtree(root, ignore_errors=True)
    problems = root / "runs/exp/main/synth/problems.jsonl"
    problems.parent.mkdir(parents=True)
    problems.write_text(json.dumps({"tests": [{"input": "1\n", "output": "secret-answer"}]}) + "\n")
    done = root / "runs/exp/main/synth/DONE"
    done.write_text("{}")
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    yield {"run_dir": root / "runs/exp/main", "problems": problems, "done": done}
    shutil.rmtree(root, ignore_errors=True)


def _targets(host_files) -> list[str]:
    paths = [host_files["run_dir"], host_files["run_dir"] / "synth", host_files["problems"], host_files["done"],
             REPO, REPO / "README.md", REPO / "promptcot_pl", Path(sys.prefix), Path.cwd()]
    return [str(p) for p in paths]


def _untouched(host_files) -> None:
    assert "secret-answer" in host_files["problems"].read_text()
    assert host_files["problems"].read_text().count("\n") == 1 and host_files["done"].read_text() == "{}"
    assert not any(REPO.rglob("planted")) and not (REPO / "README.md").read_text().endswith("x")


@pytest.mark.skipif(os.geteuid() != 0, reason="the root sandbox (uid drop) is what our machines and CI run")
def test_as_root_nothing_of_the_host_is_visible(host_files, tmp_path):
    home, hf_cache = Path.home(), Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface"))
    planted_cache = hf_cache / "hub" / "promptcot-probe.txt"
    planted_cache.parent.mkdir(parents=True, exist_ok=True)
    planted_cache.write_text("cached")
    os.chmod(planted_cache, 0o644)
    try:
        paths = _targets(host_files) + [str(home), str(home / ".cache"), str(hf_cache), str(planted_cache),
                                        str(tmp_path), "/etc/passwd", "/etc", "/work", "/var", "/opt", "/root"]
        verdict = run_tests(PROBE.format(paths=paths), [{"input": "", "output": "sealed"}], timeout_s=10)
        assert verdict.passed, verdict.tests[0].stderr_tail
        assert "minimal read-only root" in verdict.isolation
        assert planted_cache.read_text() == "cached"
    finally:
        planted_cache.unlink()
    _untouched(host_files)


def test_the_runtime_is_all_there_and_read_only():
    code = ("import json, sqlite3, decimal, os, sys\nprint(json.dumps([1]))\n"
            "try:\n    open(os.path.join(os.path.dirname(os.__file__), 'planted.py'), 'w')\n    print('wrote')\n"
            "except OSError:\n    print('read-only')\n"
            "print(sorted(os.listdir('/dev')))\n")
    verdict = run_tests(code, [{"input": "", "output": "[1]\nread-only\n"
                               "['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'urandom', 'zero']"}])
    assert verdict.passed, verdict


def test_each_test_starts_from_a_fresh_working_directory():
    code = ("import os\nleft = sorted(os.listdir('.')) + sorted(os.listdir('/tmp')) + sorted(os.listdir('/dev/shm'))\n"
            "print(left)\nopen('mine', 'w').write('x')\nopen('/tmp/left-behind', 'w').write('x')\n"
            "open('/dev/shm/left-behind', 'w').write('x')\n")
    expected = "['.stdin', 'prog.py', 'work']"
    verdict = run_tests(code, [{"input": "", "output": expected}] * 3)
    assert verdict.passed, verdict


@pytest.mark.skipif(not (SETPRIV and SYSTEM_PYTHON.exists() and os.geteuid() == 0),
                    reason="needs setpriv and a system Python to run the sandbox as an unprivileged user")
def test_as_an_unprivileged_user_nothing_of_the_host_is_visible(host_files):
    """The SLURM case: no root, so the sandbox runs through a user namespace as the caller — who could write the
    run directory before this sandbox."""
    for path in (REPO, *REPO.parents):
        if not os.stat(path).st_mode & 0o005:
            pytest.skip(f"{path} is closed to other users: an unprivileged user cannot import the checkout")
    # the unprivileged user owns the run directory, as a SLURM user owns theirs
    for path in [host_files["run_dir"], *host_files["run_dir"].rglob("*")]:
        os.chown(path, 65534, 65534)
    script = ("import json, sys\nfrom promptcot_pl.verify.code import run_tests\n"
              f"v = run_tests({PROBE.format(paths=_targets(host_files))!r}, [{{'input': '', 'output': 'sealed'}}])\n"
              "print(json.dumps({'passed': v.passed, 'isolation': v.isolation, 'why': v.tests[0].stderr_tail,"
              " 'status': v.tests[0].status, 'reason': v.tests[0].reason}))\n")
    proc = subprocess.run([SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", str(SYSTEM_PYTHON), "-c",
                           script], cwd="/", env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads(proc.stdout.strip().splitlines()[-1])
    if not any(item.startswith("namespaces:user") for item in verdict["isolation"]):
        pytest.skip(f"this kernel refuses unprivileged user namespaces: {verdict['isolation']}")
    assert verdict["passed"], verdict
    assert "minimal read-only root" in verdict["isolation"]
    _untouched(host_files)
