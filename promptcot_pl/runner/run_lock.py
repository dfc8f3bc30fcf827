"""One run directory, one writer: `promptcot run` holds an exclusive `flock` on `<run_dir>/.lock` while it runs.

A second run into the same directory stops at once with the holder's PID and host (read from the lock file),
before it writes anything. The kernel drops the lock when its holder dies — `kill -9` included — so a lock left
by a killed run is no lock: the next run takes it and rewrites the holder line. (`flock` on NFS is emulated
with POSIX locks by Linux ≥ 2.6.12; on a filesystem without locks the run says so and stops.)
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from promptcot_pl.config import ConfigError


class RunDirectoryBusy(ConfigError):
    """Another live process writes this run directory."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ConfigError(f"{path}: cannot lock the run directory ({err.strerror}); is it on a filesystem "
                                  "without locks?") from None
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirectoryBusy(f"{run_dir.resolve()}: the run directory is in use by another promptcot run ({holder}). "
                                   "Wait for it to finish, stop it, or pick another run_name=...") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
