"""Run untrusted Python programs against stdin/stdout unit tests in a sandbox.

`run_tests(code, tests)` judges one program; `run_many(jobs)` judges many in parallel (threads, each driving
its own sandbox process). Tests are the released PromptCoT format `{"input": stdin, "output": expected}`;
outputs are compared ignoring trailing whitespace on each line and trailing blank lines.

What the sandbox covers (see `sandbox_init.py` for how), as root — our machines and CI:
- every test runs in a fresh `python -I -S` process (stdlib only, no site-packages, no user environment),
  as an unprivileged uid chosen at random for this call, with no supplementary groups;
- new PID, mount, network, IPC and UTS namespaces: no network at all (not even loopback services of the host),
  a /proc that shows only the sandbox, private size-capped tmpfs on /tmp, /var/tmp and /dev/shm (the working
  directory is deleted with the namespace), home directories closed to others (e.g. /root) hidden;
- rlimits on CPU time, address space (`memory_mb`), file size, processes (64, per sandbox uid), open files;
- a wall-clock timeout per test and a stdout cap; after every test all processes of the sandbox are SIGKILLed,
  daemonised grandchildren included (the kernel kills a PID namespace with its init), so none survives
  `run_tests`.
What it does not cover: world-readable host files stay readable (e.g. /etc, installed packages); CPU and memory
are limited per process, not by a cgroup; there is no seccomp syscall filter. Without root, the same isolation
is tried through an unprivileged user namespace (the program then runs as the calling user inside it, so
files writable by that user are at risk); where the kernel refuses namespaces, only rlimits, a process-group
kill and (as root) the uid drop remain — `CodeVerdict.isolation` always lists what was applied.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SANDBOX_INIT = Path(__file__).with_name("sandbox_init.py")


def _runtime_paths() -> tuple[list[str], list[str]]:
    """What of this interpreter the sandbox binds read-only into its root (the executable, its library dir with
    libpython and the standard library), and the installed-package dirs it covers there with an empty mount."""
    lib = sysconfig.get_config_var("LIBDIR") or ""
    stdlib = sysconfig.get_paths()["stdlib"]
    shown = [os.path.realpath(sys.executable)] + [os.path.realpath(p) for p in (lib, stdlib) if p and os.path.isdir(p)]
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    hidden = {os.path.realpath(sysconfig.get_paths(vars=base)[key]) for key in ("purelib", "platlib")}
    return sorted(set(shown)), sorted(hidden)


_RUNTIME, _RUNTIME_HIDDEN = _runtime_paths()
Status = Literal["pass", "wrong", "timeout", "error", "memory"]
# A fence line: three or more backticks (or tildes), then an info string whose first word is the language.
_FENCE = re.compile(r"^[ ]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


@dataclass
class TestResult:
    status: Status
    seconds: float
    stderr_tail: str = ""
    reason: str = ""


@dataclass
class CodeVerdict:
    passed: bool
    tests: list[TestResult] = field(default_factory=list)
    isolation: list[str] = field(default_factory=list)

    @property
    def statuses(self) -> list[Status]:
        return [t.status for t in self.tests]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block of a Markdown answer as (language, body), in order. Fences pair as CommonMark pairs them:
    a block closes at the first fence line of the same character at least as long and with no info string, so a
    ```` ```cpp ```` block's closing fence is never taken for the opening of the next block. An unclosed block runs
    to the end of the text."""
    blocks, lines, i = [], text.splitlines(keepends=True), 0
    while i < len(lines):
        opening = _FENCE.match(lines[i].rstrip("\r\n"))
        i += 1
        if opening is None:
            continue
        fence, info = opening["fence"], opening["info"].strip()
        body = []
        while i < len(lines):
            closing = _FENCE.match(lines[i].rstrip("\r\n"))
            i += 1
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence) \
                    and not closing["info"].strip():
                break
            body.append(lines[i - 1])
        language = info.split()[0].lower() if info else ""
        blocks.append((language, "".join(body)))
    return blocks


def extract_code(text: str) -> str | None:
    """The program of a model answer: its last fenced block tagged python (any case: ```` ```Python ````, py,
    python3) or untagged, or None when there is none or it is empty — a C++ block is never graded as Python."""
    python = [body for language, body in code_blocks(text) if language in PYTHON_TAGS]
    return python[-1] if python and python[-1].strip() else None


def outputs_match(got: str, expected: str) -> bool:
    def lines(text: str) -> list[str]:
        out = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
        while out and not out[-1]:
            out.pop()
        return out

    return lines(got) == lines(expected)


def _judge(raw: dict, expected: str, timeout_s: float) -> TestResult:
    stderr = raw.get("stderr_tail", "")
    seconds = raw.get("seconds", 0.0)
    if raw["timed_out"] or raw["signal"] in (signal.SIGXCPU, signal.SIGKILL) and seconds >= timeout_s:
        return TestResult("timeout", seconds, stderr, f"no result within {timeout_s:g} s")
    if raw["signal"] == signal.SIGXCPU:
        return TestResult("timeout", seconds, stderr, "CPU time limit")
    if raw["output_limit"]:
        return TestResult("error", seconds, stderr, "stdout exceeded the output cap")
    if "MemoryError" in stderr or raw["signal"] == signal.SIGKILL:
        return TestResult("memory", seconds, stderr, "memory limit")
    if raw["signal"] is not None:
        return TestResult("error", seconds, stderr, f"killed by signal {raw['signal']}")
    if raw["exit"] != 0:
        return TestResult("error", seconds, stderr, f"exit code {raw['exit']}")
    if outputs_match(raw["stdout"], expected):
        return TestResult("pass", seconds, stderr)
    return TestResult("wrong", seconds, stderr, "output differs from the expected output")


def run_tests(code: str, tests: Sequence[dict], timeout_s: float = 30.0, memory_mb: int = 512) -> CodeVerdict:
    """Run `code` on every test's input in the sandbox; `passed` only if all tests pass."""
    if not tests:
        raise ValueError("run_tests needs at least one test")
    expected = [str(t["output"]) for t in tests]
    output_limit = max(1 << 20, 4 * max(len(e) for e in expected))
    spec = {
        "code": code, "inputs": [str(t["input"]) for t in tests], "timeout_s": timeout_s, "memory_mb": memory_mb,
        "uid": random.randint(200_000, 2_000_000_000), "output_limit": output_limit, "stderr_tail": 2000,
        "file_mb": 16, "tmpfs_mb": 64, "python": os.path.realpath(sys.executable),
        "runtime": _RUNTIME, "runtime_hidden": _RUNTIME_HIDDEN,
    }
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(SANDBOX_INIT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    budget = len(tests) * (timeout_s + 1.0) + 10.0
    try:
        out, err = proc.communicate(json.dumps(spec).encode(), timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # init dies with its group, and the namespace with init
        proc.communicate()
        return CodeVerdict(False, [TestResult("timeout", budget, "", "sandbox did not finish")] * len(tests))
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        reason = f"sandbox failed: {err.decode(errors='replace')[-500:]}"
        return CodeVerdict(False, [TestResult("error", 0.0, "", reason)] * len(tests))
    if "error" in report:
        return CodeVerdict(False, [TestResult("error", 0.0, "", report["error"])] * len(tests), report["isolation"])
    results = [_judge(raw, exp, timeout_s) for raw, exp in zip(report["results"], expected)]
    return CodeVerdict(all(r.status == "pass" for r in results), results, report["isolation"])


def run_many(jobs: Sequence[tuple[str, Sequence[dict]]], timeout_s: float = 30.0, memory_mb: int = 512,
             workers: int | None = None) -> list[CodeVerdict]:
    """`run_tests` for many (code, tests) jobs, `workers` sandboxes at a time (default: CPU count)."""
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda job: run_tests(job[0], job[1], timeout_s, memory_mb), jobs))
