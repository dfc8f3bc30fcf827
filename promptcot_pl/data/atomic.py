"""The one way this project writes a file or a directory that a rerun may read: build it under a unique temporary
name beside the target, then rename it into place. A killed or failed writer leaves the old file (or
none), never half a file; its temporary is removed on errors, and one left by `kill -9` is a dot-file a rerun
ignores. Renames within one directory are atomic on POSIX filesystems.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object], *, fsync: bool = False) -> Path:
    """`write(tmp)` writes the content to the temporary path `tmp` (same directory and suffix as `path`, so
    writers that add a suffix, like numpy's, keep its name); then it replaces `path`. `fsync`: the content is on
    disk before the rename (streamed shards that must survive a machine crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync=fsync)


def atomic_dir(path: str | Path, build: Callable[[Path], object], *, replace: bool = True) -> Path:
    """`build(tmp)` fills the empty temporary directory `tmp`; then it becomes `path`. `replace=False` is for
    content-addressed directories that concurrent builders may race to publish (a cache): a `path` that appeared
    meanwhile wins and this build is dropped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        build(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 directories
        if replace:
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.replace(tmp, path)
        except OSError:
            if replace or not path.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
