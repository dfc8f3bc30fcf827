"""One atomic writer: a write that fails leaves the old content and no temporary behind; a
directory built by racing writers is the first one's."""

import numpy as np
import pytest

from promptcot_pl.data.atomic import atomic_dir, atomic_write, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "a.json", "old")

    def half(tmp):
        tmp.write_text("ne")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, half)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_a_writer_that_adds_the_suffix_writes_the_target(tmp_path):
    path = atomic_write(tmp_path / "bank.npz", lambda tmp: np.savez(tmp, x=np.arange(3)))
    assert np.load(path)["x"].tolist() == [0, 1, 2] and len(list(tmp_path.iterdir())) == 1


def test_directories_replace_or_let_the_first_publisher_win(tmp_path):
    target = tmp_path / "model"
    atomic_dir(target, lambda tmp: (tmp / "w").write_text("1"))
    atomic_dir(target, lambda tmp: (tmp / "w").write_text("2"))
    assert (target / "w").read_text() == "2"
    atomic_dir(target, lambda tmp: (tmp / "w").write_text("3"), replace=False)  # a cache entry: first one stays
    assert (target / "w").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert oct(target.stat().st_mode & 0o777) == "0o755"
