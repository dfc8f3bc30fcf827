"""A pool of worker processes whose calls can be killed: a call past its timeout kills its worker (SIGKILL)
and a fresh worker takes its place, so a hung or exploding check costs one timeout, never the caller.

Workers are plain subprocesses (`python -m MODULE`) speaking one JSON object per line over stdin/stdout;
a worker prints `{"ready": true}` once its imports are done and is only given work after that, so slow
imports never count against a call's timeout. No multiprocessing: nothing of the caller's `__main__` is
re-imported, and a worker can die in any way without corrupting the pool.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

CRASHED = object()
"""Result of an item whose worker died or timed out."""


class _Worker:
    def __init__(self, module: str, memory_mb: int) -> None:
        def limit() -> None:  # runs in the child before exec: a memory bomb raises MemoryError there, not here
            limit_bytes = memory_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

        self.proc = subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, preexec_fn=limit, start_new_session=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both are pipes
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.ready = False
        self.buffer = b""
        self.job: tuple[int, float] | None = None  # (item index, deadline)

    def send(self, index: int, payload: dict[str, Any], timeout_s: float) -> None:
        self.job = (index, time.monotonic() + timeout_s)
        self.stdin.write(json.dumps({"id": index, **payload}).encode() + b"\n")
        self.stdin.flush()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()


class KillablePool:
    """`map(payloads, timeout_s)` over `n_workers` workers running `python -m module`."""

    def __init__(self, module: str, n_workers: int, memory_mb: int = 2048) -> None:
        self.module, self.n_workers, self.memory_mb = module, n_workers, memory_mb
        self.workers = [_Worker(module, memory_mb) for _ in range(n_workers)]
        self.lock = threading.Lock()

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.workers = []

    def _replace(self, worker: _Worker, selector: selectors.BaseSelector) -> _Worker:
        selector.unregister(worker.stdout)
        worker.kill()
        fresh = _Worker(self.module, self.memory_mb)
        self.workers[self.workers.index(worker)] = fresh
        selector.register(fresh.stdout, selectors.EVENT_READ, fresh)
        return fresh

    def map(self, payloads: Sequence[dict[str, Any]], timeout_s: float) -> list[Any]:
        """Results in order; `CRASHED` where the worker timed out or died."""
        with self.lock:
            return self._map(payloads, timeout_s)

    def _map(self, payloads: Sequence[dict[str, Any]], timeout_s: float) -> list[Any]:
        results: list[Any] = [CRASHED] * len(payloads)
        todo = deque(range(len(payloads)))
        pending = len(payloads)
        selector = selectors.DefaultSelector()
        for worker in self.workers:
            selector.register(worker.stdout, selectors.EVENT_READ, worker)
        try:
            while pending:
                for worker in list(self.workers):
                    if worker.ready and worker.job is None and todo:
                        index = todo.popleft()
                        try:
                            worker.send(index, payloads[index], timeout_s)
                        except (BrokenPipeError, OSError):
                            pending -= 1  # the worker died between calls: this item crashed
                            self._replace(worker, selector)
                deadlines = [w.job[1] for w in self.workers if w.job is not None]
                wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
                for key, _ in selector.select(timeout=wait):
                    worker = key.data
                    chunk = os.read(worker.stdout.fileno(), 1 << 16)
                    if not chunk:  # the worker died: its item (if any) crashed
                        if not worker.ready:
                            code = worker.proc.wait()
                            raise RuntimeError(f"worker `python -m {self.module}` exited while starting (code {code}); "
                                               f"run it by hand to see why")
                        if worker.job is not None:
                            pending -= 1
                        self._replace(worker, selector)
                        continue
                    worker.buffer += chunk
                    while b"\n" in worker.buffer:
                        line, worker.buffer = worker.buffer.split(b"\n", 1)
                        message = json.loads(line)
                        if message.get("ready"):
                            worker.ready = True
                        elif worker.job is not None and message.get("id") == worker.job[0]:
                            results[worker.job[0]] = message.get("result")
                            worker.job = None
                            pending -= 1
                now = time.monotonic()
                for worker in list(self.workers):
                    if worker.job is not None and now >= worker.job[1]:
                        pending -= 1
                        self._replace(worker, selector)
        finally:
            selector.close()
        return results
