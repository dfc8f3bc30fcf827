"""The code sandbox against hostile programs (one property per test) and a correctness suite."""

import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest

from promptcot_pl.verify.code import CodeVerdict, extract_code, outputs_match, run_many, run_tests

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 2.0
AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def victims():
    """Host files outside /tmp that hostile programs try to read, change or delete."""
    root = REPO / ".pytest_victims"
    root.mkdir(exist_ok=True)
    os.chmod(root, 0o755)
    public, secret = root / "public.txt", root / "secret.txt"
    public.write_text("do not delete")
    secret.write_text("s3cr3t-value")
    os.chmod(public, 0o644)
    os.chmod(secret, 0o600)
    yield root
    for p in root.iterdir():
        p.unlink()
    root.rmdir()


def _uid_of(verdict: CodeVerdict) -> int | None:
    for item in verdict.isolation:
        match = re.fullmatch(r"uid (\d+)", item)
        if match:
            return int(match.group(1))
    return None


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except FileNotFoundError:
                pass
    return found


def _hostile(code: str, expected: str = "escaped", test_input: str = "") -> CodeVerdict:
    start = time.monotonic()
    verdict = run_tests(code, [{"input": test_input, "output": expected}], timeout_s=TIMEOUT, memory_mb=256)
    assert time.monotonic() - start < TIMEOUT + 5, "run_tests must return soon after its timeout"
    assert not verdict.passed, verdict
    uid = _uid_of(verdict)
    if uid is not None:
        assert _processes_of(uid) == [], "a sandbox process outlived run_tests"
    return verdict


HOSTILE = {
    "fork_bomb": ("import os\nwhile True:\n    os.fork()\n", {"error", "timeout", "memory"}),
    "fork_bomb_then_claim": ("import os\nfor _ in range(5000):\n    os.fork()\nprint('escaped')\n", {"error", "timeout", "memory", "wrong"}),
    "memory_bomb_list": ("a = [0] * 10**10\n", {"memory"}),
    "memory_bomb_growth": ("x = []\nwhile True:\n    x.append(' ' * 10**7)\n", {"memory"}),
    "infinite_loop": ("while True:\n    pass\n", {"timeout"}),
    "sleep": ("import time\ntime.sleep(100)\n", {"timeout"}),
    "ignore_sigterm": ("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass\n", {"timeout"}),
    "gigabytes_of_stdout": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", {"error"}),
    "exit_before_print": ("exit(0)\nprint('escaped')\n", {"wrong"}),
    "os_exit_before_print": ("import os\nos._exit(0)\nprint('escaped')\n", {"wrong"}),
    "huge_file": ("f = open('big', 'wb')\nwhile True:\n    f.write(b'0' * 2**20)\n", {"error"}),
    "fill_shared_memory": ("f = open('/dev/shm/fill', 'wb')\nwhile True:\n    f.write(b'0' * 2**20)\n", {"error"}),
    "read_shadow": ("print(open('/etc/shadow').read())\n", {"error"}),
    "become_root": ("import os\nos.setuid(0)\nprint('escaped')\n", {"error"}),
    "many_open_files": ("fs = [open('f%d' % i, 'w') for i in range(10000)]\nprint('escaped')\n", {"error"}),
    "thread_storm": ("import threading, time\nts = [threading.Thread(target=time.sleep, args=(5,)) for _ in range(500)]\n"
                     "[t.start() for t in ts]\nprint('escaped')\n", {"error", "timeout"}),
    "recursion_segfault": ("import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
                           {"error", "memory", "timeout"}),
    "read_beyond_stdin": ("input()\ninput()\nprint('escaped')\n", {"error"}),
    "kill_parent": ("import os\nos.kill(os.getppid(), 9)\nos.kill(1, 9)\nprint('escaped')\n", {"error"}),
    "kill_everyone": ("import os\nos.kill(-1, 9)\nprint('escaped')\n", {"error", "memory"}),
    "shell_rm_rf": ("import os\nos.system('rm -rf /work /usr/lib 2>/dev/null')\n", {"wrong", "timeout"}),
    "network_to_public_dns": ("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\nprint('escaped')\n",
                              {"error"}),
    "escape_tmp_listing": ("import os\nprint(os.listdir('/tmp'))\n", {"wrong"}),
    "read_host_proc": ("import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))\n", {"wrong"}),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(name):
    code, allowed = HOSTILE[name]
    verdict = _hostile(code)
    assert verdict.tests[0].status in allowed, (verdict.tests[0], allowed)
    assert verdict.tests[0].status == "wrong" or verdict.tests[0].reason  # the verdict says why
    assert (REPO / "README.md").is_file() and Path(sys.executable).exists()  # host files unharmed


def test_writing_and_deleting_host_files_fails(victims):
    public = victims / "public.txt"
    code = (f"import os, shutil\nfor act in (lambda: open({str(victims / 'new.txt')!r}, 'w').write('x'),\n"
            f"            lambda: os.remove({str(public)!r}), lambda: shutil.rmtree({str(victims)!r}),\n"
            f"            lambda: open({str(public)!r}, 'a').write('x')):\n"
            "    try:\n        act()\n        print('escaped')\n    except OSError:\n        pass\n")
    verdict = _hostile(code)
    assert verdict.tests[0].status == "wrong"
    assert public.read_text() == "do not delete" and not (victims / "new.txt").exists()


def test_reading_the_parents_secrets_fails(victims, monkeypatch):
    monkeypatch.setenv("PROMPTCOT_TEST_SECRET", "env-secret-42")
    code = ("import os\nprint(os.environ.get('PROMPTCOT_TEST_SECRET'))\n"
            f"try:\n    print(open({str(victims / 'secret.txt')!r}).read())\nexcept OSError as e:\n    print(e)\n"
            "for p in os.listdir('/proc'):\n    try:\n        print(open(f'/proc/{p}/environ').read())\n"
            "    except OSError:\n        pass\n")
    for expected in ("env-secret-42", "s3cr3t-value"):
        verdict = _hostile(code, expected=expected)
        assert verdict.tests[0].status == "wrong"


def test_host_tmp_and_shm_are_untouched():
    marker = f"promptcot-escape-{os.getpid()}"
    code = (f"for d in ('/tmp', '/dev/shm', '/var/tmp'):\n    open(d + '/{marker}', 'w').write('x')\n"
            "print('escaped')\n")
    verdict = run_tests(code, [{"input": "", "output": "nothing"}], timeout_s=TIMEOUT)
    # it could write, but only into its own private tmpfs; /var/tmp does not exist in the sandbox's root
    assert verdict.tests[0].status == "error" and "/var/tmp" in verdict.tests[0].stderr_tail, verdict
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not Path(d, marker).exists()


def test_connecting_to_a_socket_the_test_opened_fails():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.setblocking(False)
    port = server.getsockname()[1]
    code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "s.sendall(b'hello')\nprint('escaped')\n")
    verdict = _hostile(code)
    assert verdict.tests[0].status == "error" and "unreachable" in verdict.tests[0].stderr_tail.lower()
    with pytest.raises(BlockingIOError):
        server.accept()
    server.close()


def test_killing_the_test_process_by_pid_fails():
    code = f"import os\nos.kill({os.getpid()}, 9)\nprint('escaped')\n"
    verdict = _hostile(code)
    assert verdict.tests[0].status == "error"  # the pid does not exist in the sandbox's PID namespace


def test_daemonised_grandchild_is_gone_when_run_tests_returns():
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        while True:\n            time.sleep(0.1)\n    os._exit(0)\nprint('parent done')\n")
    verdict = run_tests(code, [{"input": "", "output": "parent done"}], timeout_s=TIMEOUT)
    assert verdict.passed  # legitimate output, and yet nothing of it survives
    uid = _uid_of(verdict)
    if uid is not None:
        assert _processes_of(uid) == []


def test_subprocess_and_threads_are_allowed_within_limits():
    code = ("import subprocess, threading, sys\nout = subprocess.run([sys.executable, '-I', '-S', '-c', "
            "'print(6*7)'], capture_output=True, text=True).stdout\nres = []\n"
            "ts = [threading.Thread(target=lambda: res.append(1)) for _ in range(4)]\n[t.start() for t in ts]\n"
            "[t.join() for t in ts]\nprint(out.strip(), len(res))\n")
    verdict = run_tests(code, [{"input": "", "output": "42 4"}], timeout_s=5)
    assert verdict.passed, verdict


@pytest.mark.skipif(not AS_ROOT, reason="the uid drop and namespaces as root are what CI runs")
def test_isolation_as_root_is_complete():
    verdict = run_tests("print(1)", [{"input": "", "output": "1"}])
    assert verdict.passed
    assert verdict.isolation[0] == "namespaces:mount,pid,net,ipc,uts"
    assert {"minimal read-only root", "fresh /tmp and /dev/shm per test", "private /proc"} <= set(verdict.isolation)
    assert _uid_of(verdict) is not None and _uid_of(verdict) >= 200_000


CORRECT = [
    ("print(sum(map(int, input().split())))", [("1 2\n", "3\n"), ("-5 5\n", "0")]),
    ("n = int(input())\nprint(' '.join(str(i) for i in range(n)))", [("3\n", "0 1 2\n"), ("1\n", "0")]),
    ("import sys\ndata = sys.stdin.read().split()\nprint(max(map(int, data)))", [("3 9 2", "9"), ("-1 -7", "-1")]),
    ("s = input()\nprint(s[::-1])", [("abc\n", "cba"), ("x\n", "x\n")]),
    ("for line in open(0):\n    print(line.strip().upper())", [("a\nb\n", "A\nB\n")]),
    ("print('trailing   ')\nprint()\nprint()", [("", "trailing")]),
    ("import math\nprint(math.gcd(*map(int, input().split())))", [("12 18\n", "6")]),
    ("n = int(input())\nprint('YES' if n % 2 == 0 else 'NO')", [("4\n", "YES"), ("7\n", "NO")]),
    ("from collections import Counter\nc = Counter(input())\nprint(c.most_common(1)[0][0])", [("abbb\n", "b")]),
    ("import sys\nsys.stdout.write('1\\r\\n2\\r\\n')", [("", "1\n2")]),
    ("def main():\n    print(int(input()) ** 2)\nif __name__ == '__main__':\n    main()", [("9\n", "81")]),
]
INCORRECT = [
    ("print(sum(map(int, input().split())) + 1)", [("1 2\n", "3\n")], "wrong"),
    ("print('Yes')", [("", "YES")], "wrong"),
    ("print(1)\nprint(2)", [("", "1")], "wrong"),
    ("print(' 1')", [("", "1")], "wrong"),  # leading whitespace matters
    ("raise SystemExit(3)", [("", "")], "error"),
    ("import numpy", [("", "")], "error"),  # stdlib only in the sandbox
    ("print(undefined)", [("", "x")], "error"),
    ("print(1/0)", [("", "x")], "error"),
    ("def f(:\n  pass", [("", "x")], "error"),
    ("n = int(input())\nprint(n)", [("5\n", "5"), ("6\n", "7")], "wrong"),
]


@pytest.mark.parametrize("code, cases", CORRECT)
def test_correct_programs_pass(code, cases):
    verdict = run_tests(code, [{"input": i, "output": o} for i, o in cases])
    assert verdict.passed, verdict


@pytest.mark.parametrize("code, cases, status", INCORRECT)
def test_incorrect_programs_fail_with_the_right_status(code, cases, status):
    verdict = run_tests(code, [{"input": i, "output": o} for i, o in cases])
    assert not verdict.passed and verdict.statuses[-1] == status, verdict


def test_run_many_keeps_order_and_isolates_a_bomb_from_its_neighbours():
    good = ("print(input())", [{"input": "hi\n", "output": "hi"}])
    bomb = ("import os\nwhile True:\n    os.fork()", [{"input": "", "output": "x"}])
    verdicts = run_many([good, bomb, good, bomb, good], timeout_s=TIMEOUT)
    assert [v.passed for v in verdicts] == [True, False, True, False, True]


def test_extract_code_and_output_comparison():
    text = "First try:\n```python\nprint(1)\n```\nBetter:\n```python\nprint(2)\n```\nDone."
    assert extract_code(text) == "print(2)\n"
    assert extract_code("```\nprint(3)\n```") == "print(3)\n"
    assert extract_code("no code here") is None
    assert outputs_match("1 \n2\n\n\n", "1\n2") and not outputs_match("1\n2", "1\n 2")


def test_sandbox_needs_no_site_packages():
    assert sys.flags.isolated == 0  # the test process itself is normal; the sandbox runs -I -S
    verdict = run_tests("import sys\nprint(sys.flags.isolated, sys.flags.no_site)", [{"input": "", "output": "1 1"}])
    assert verdict.passed, verdict


MIXED = "```cpp\nint main() { return 0; }\n```\nNow in Python:\n```python\nprint(int(input()) * 2)\n```\n"


def test_fences_pair_properly_and_only_python_is_graded():
    """a C++ block first does not make the prose between the blocks the "program"."""
    from promptcot_pl.data.records import Problem
    from promptcot_pl.verify.code import code_blocks
    from tests.reference import reward

    assert code_blocks(MIXED) == [("cpp", "int main() { return 0; }\n"), ("python", "print(int(input()) * 2)\n")]
    assert extract_code(MIXED) == "print(int(input()) * 2)\n"
    assert extract_code("```Python\nprint(1)\n```") == "print(1)\n"  # info strings are case-insensitive
    assert extract_code("```PY3 title=x\nprint(1)\n```") == "print(1)\n"
    assert extract_code("```python\nprint(1)\n```\nthen\n```cpp\nint x;\n```") == "print(1)\n"  # last *python* block
    assert extract_code("```cpp\nint x;\n```\nNow in Python: see above.") is None
    assert extract_code("````python\nprint('```')\n````") == "print('```')\n"  # a longer fence holds a shorter one
    assert extract_code("~~~python\nprint(2)\n~~~") == "print(2)\n"
    assert extract_code("```python\nprint(3)\n") == "print(3)\n"  # unclosed: to the end of the answer
    problem = Problem(id="p", domain="code", problem="double it", tests=[{"input": "4\n", "output": "8"}])
    assert reward(MIXED, problem, timeout_s=5) == 1.0
    assert reward(MIXED.replace("```python", "```rust"), problem, timeout_s=5) == 0.0
