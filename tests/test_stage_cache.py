"""Stages shared between runs (the trials of a sweep): which settings split them, reuse, and a forced rerun that
must not write through the hard links into the cache. Also: a run directory of another version is refused clearly."""

import json

import pytest

from promptcot_pl.config import ConfigError
from promptcot_pl.experiment import load_config
from promptcot_pl.pipeline import run_pipeline
from promptcot_pl.runner.stage_cache import StageCache, stage_digest
from tests.conftest import REPO

DEBUG = REPO / "experiments/debug/tiny.yaml"


def _cfg(tmp_path, *overrides):
    return load_config(DEBUG, [f"output_dir={tmp_path / 'runs'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                               *overrides])


def test_resume_and_the_cache_share_one_list_of_how_to_run_keys(tmp_path):
    """How a run runs (processes, logging, checkpoint cadence) neither splits the cache nor blocks a resume; what
    it computes (precision, accumulation, clipping) does both."""
    from promptcot_pl.pipeline import _check_same_experiment, _save_config, run_dir_of

    base = _cfg(tmp_path)
    saved = run_dir_of(base) / "config.yaml"
    _save_config(base, saved)
    for how in ("trainer.devices=2", "trainer.log_every_n_steps=7", "trainer.checkpoint_every_n_steps=3",
                "engine.progress=true"):
        assert stage_digest(_cfg(tmp_path, how), "coldstart") == stage_digest(base, "coldstart"), how
        _check_same_experiment(_cfg(tmp_path, how), saved)
    (saved.parent / "coldstart").mkdir()  # coldstart started here: its settings and the shared ones are fixed
    for what in ("trainer.accumulate_grad_batches=2", "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=0.5"):
        assert stage_digest(_cfg(tmp_path, what), "coldstart") != stage_digest(base, "coldstart"), what
        with pytest.raises(ConfigError, match="different config"):
            _check_same_experiment(_cfg(tmp_path, what), saved)


def test_a_stage_digest_ignores_later_stages_and_run_names(tmp_path):
    base = _cfg(tmp_path)
    em_change = _cfg(tmp_path, "em.k=5", "run_name=other", "stages=[seed]")
    assert stage_digest(base, "seed") == stage_digest(em_change, "seed")
    assert stage_digest(base, "coldstart") == stage_digest(em_change, "coldstart")
    assert stage_digest(base, "em") != stage_digest(em_change, "em")
    cold_change = _cfg(tmp_path, "coldstart.epochs=9")
    assert stage_digest(base, "seed") == stage_digest(cold_change, "seed")
    assert stage_digest(base, "coldstart") != stage_digest(cold_change, "coldstart")
    assert stage_digest(base, "seed") != stage_digest(_cfg(tmp_path, "seed=1"), "seed")
    assert stage_digest(base, "seed") != stage_digest(_cfg(tmp_path, "domain.n_items=100"), "seed")


def test_a_finished_stage_is_reused_and_a_forced_rerun_leaves_the_cache_intact(tmp_path, caplog):
    cache = StageCache(tmp_path / "stage_cache")
    first = _cfg(tmp_path, "stages=[seed]", "run_name=a")
    metrics = run_pipeline(first, cache=cache)
    (entry,) = [p for p in (tmp_path / "stage_cache").iterdir() if not p.name.startswith(".")]
    assert entry.name.startswith("seed-") and (entry / "DONE").is_file()
    published = {p.name: p.read_bytes() for p in entry.iterdir()}

    second = _cfg(tmp_path, "stages=[seed]", "run_name=b", "em.k=7")  # EM settings do not split the seed stage
    caplog.clear()
    with caplog.at_level("INFO", logger="promptcot"):
        assert run_pipeline(second, cache=cache) == metrics
    assert f"stage seed: reused {entry}" in caplog.text
    reused = tmp_path / "runs/tiny/b/seed"
    assert {p.name: p.read_bytes() for p in reused.iterdir()} == published
    assert (reused / "train.jsonl").stat().st_ino == (entry / "train.jsonl").stat().st_ino  # linked, not copied

    run_pipeline(second, cache=cache, force=True)  # a rerun rewrites its stage but never the cache's files
    assert {p.name: p.read_bytes() for p in entry.iterdir()} == published
    assert (reused / "train.jsonl").stat().st_ino != (entry / "train.jsonl").stat().st_ino
    assert json.loads((reused / "DONE").read_text()) == metrics

    third = _cfg(tmp_path, "stages=[seed]", "run_name=c", "seed=3")  # another seed set: computed, not reused
    caplog.clear()
    with caplog.at_level("INFO", logger="promptcot"):
        run_pipeline(third, cache=cache)
    assert "reused" not in caplog.text
    assert len([p for p in (tmp_path / "stage_cache").iterdir() if not p.name.startswith(".")]) == 2


def test_a_run_directory_of_another_version_gets_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, "stages=[seed]", "run_name=old")
    run_dir = tmp_path / "runs/tiny/old"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("selfplay:\n  pass_window: [0.0, 0.5]\n")  # a key this version lacks
    with pytest.raises(ConfigError, match="made by another version.*pass_window.*delete"):
        run_pipeline(cfg)
    assert (run_dir / "config.yaml").read_text().startswith("selfplay:")  # nothing overwritten
