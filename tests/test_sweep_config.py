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
    ("search_space:\n  em.tau: {type: float, low: 0.1, high: 1.0, when: {em.selection: softmax}}\n"
     "  em.selection: {type: categorical, choices: [best, softmax]}\n", "'search_space.em.tau.when.em.selection'"),
])
def test_bad_sweep_files_name_the_key(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_sweep(_write(tmp_path, body))


def test_shipped_sweeps_load_and_overrides_are_dotlists():
    sweep, experiment = load_sweep(REPO / "sweeps/em.yaml")
    assert experiment == (REPO / "experiments/quickstart.yaml").resolve() and sweep.study_name == "em_sweep"
    assert sweep.trial_overrides({"em.k": 3}) == ['stages=["seed", "coldstart", "em"]', "em.k=3"]
    load_sweep(REPO / "sweeps/debug.yaml")


def test_a_conditional_parameter_is_sampled_only_when_its_condition_holds():
    import optuna

    from promptcot_pl.sweeps.study import sample_params

    sweep, _ = load_sweep(REPO / "sweeps/reward.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen, optimizers = set(), set()
    for _ in range(30):
        trial = study.ask()
        params = sample_params(trial, sweep.search_space)
        optimizers.add(params["selfplay.optimizer"])
        # DPO's keys for DPO trials only, GRPO's for GRPO trials; label smoothing for the sigmoid loss only
        assert ("selfplay.dpo.loss" in params) == (params["selfplay.optimizer"] == "dpo")
        assert ("selfplay.grpo.problems_per_step" in params) == (params["selfplay.optimizer"] == "grpo")
        if "selfplay.dpo.loss" in params:
            seen.add(params["selfplay.dpo.loss"])
        assert ("selfplay.dpo.label_smoothing" in params) == (params.get("selfplay.dpo.loss") == "sigmoid")
        study.tell(trial, 0.0)
    assert seen == {"sigmoid", "ipo"} and optimizers == {"dpo", "grpo"}
