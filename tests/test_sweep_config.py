"""Sweep files are checked like experiment files: misspelt keys, search-space keys the experiment lacks, bad
ranges and enqueued keys outside the space are errors naming the file and the key."""

import pytest

from promptcot_pl.config import ConfigError
from promptcot_pl.sweeps.config import load_sweep
from tests.conftest import REPO

BASE = REPO / "experiments/debug/tiny.yaml"


def _write(tmp_path, body):
    path = tmp_path / "s.yaml"
    path.write_text(f"experiment: {BASE}\n" + body)
    return path


@pytest.mark.parametrize("body, message", [
    ("search_space:\n  em.kk: {type: int, low: 1, high: 3}\n", "unknown key 'em.kk'; did you mean 'em.k'"),
    ("search_space:\n  em.k: {typ: int, low: 1, high: 3}\n", "unknown key 'search_space.em.k.typ'"),
    ("search_space:\n  em.tau: {type: float, low: 2.0, high: 1.0}\n", "'search_space.em.tau': needs 'low' < 'high'"),
    ("search_space:\n  em.tau: {type: float, low: 0.0, high: 1.0, log: true}\n", "log-scale range needs low > 0"),
    ("search_space:\n  em.z_mode: {type: categorical}\n", "categorical parameter needs 'choices'"),
    ("search_space:\n  em.k: {type: int, low: 1, high: 3}\nenqueue:\n  - {em.tau: 1.0}\n", "'enqueue[0].em.tau'"),
    ("objectives:\n  - {metric: em/iwae_heldout, direction: up}\n", "'objectives[0].direction'"),
    ("pruner: {name: sometimes}\n", "pruner.name"),
])
def test_bad_sweep_files_name_the_key(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_sweep(_write(tmp_path, body))


def test_shipped_sweeps_load_and_overrides_are_dotlists():
    sweep, experiment = load_sweep(REPO / "sweeps/em.yaml")
    assert experiment == (REPO / "experiments/quickstart.yaml").resolve() and sweep.study_name == "em_sweep"
    assert sweep.trial_overrides({"em.k": 3}) == ['stages=["seed", "coldstart", "em"]', "em.k=3"]
    load_sweep(REPO / "sweeps/debug.yaml")
