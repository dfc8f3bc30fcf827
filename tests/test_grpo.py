"""Online GRPO (`selfplay.optimizer: grpo`): the engine serves the policy's weights at every step (checked weight by
weight and by the greedy probe), zero-variance groups are counted and replaced, and a round killed with -9 and
rerun equals the uninterrupted one (DONE metrics and every MLflow curve)."""

import json
import math
import shutil

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from promptcot_pl.config import EngineConfig, OptimConfig, PromptsConfig, SamplingConfig, TrainerConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.records import Problem
from promptcot_pl.generation import ServedEngine
from promptcot_pl.generation.hf import HFEngine
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.stages.selfplay.config import GRPOConfig
from promptcot_pl.stages.selfplay.grpo_module import GRPOModule
from promptcot_pl.stages.selfplay.online import GenerationBatches, OnlineRollouts
from promptcot_pl.trainer import build_trainer
from promptcot_pl.verify.rewards import Rewards
from tests.conftest import REPO, kill_when, promptcot

DEBUG = str(REPO / "experiments/debug/tiny.yaml")


class HasSeven(Rewards):
    """A reward the untrained tiny model earns about half the time (a completion holding a 7), so groups differ:
    this test is about the engine loop, not about math."""

    def judge(self, completions, problems, thinking=False):
        return [(float("7" in text), False) for text in completions]


class Served(Callback):
    """After OnlineRollouts (callbacks run in order): does the engine hold exactly the weights being trained?"""

    def __init__(self, engine: ServedEngine) -> None:
        self.engine, self.seen = engine, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        served = self.engine.engine.model.state_dict()
        same = all(torch.equal(v, served[k]) for k, v in pl_module.model.state_dict().items())
        self.seen.append((same, float(batch["stats"].get("probe_match", torch.tensor(math.nan)))))


def _fit(tiny_dir, math_triples, tmp_path, **grpo_keys):
    problems = [Problem(id=t.id, domain="math", problem=t.problem, answer=t.answer) for t in math_triples[:12]]
    tokenizer = load_tokenizer(tiny_dir)
    engine = ServedEngine(HFEngine(tiny_dir, EngineConfig(progress=False)), tiny_dir)
    grpo = GRPOConfig(problems_per_step=3, probe_tokens=8, **grpo_keys)
    fmt = PromptFormat.words_only("solver", PromptsConfig().solver)
    module = GRPOModule(load_model(tiny_dir, "float32"), OptimConfig(lr=1e-2, warmup_ratio=0.0), grpo)
    online = OnlineRollouts(engine, fmt, problems, HasSeven(), tokenizer,
                            SamplingConfig(n=4, temperature=1.0, max_new_tokens=24), grpo, tmp_path, seed=0,
                            max_length=384)
    served = Served(engine)
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False), max_epochs=1, default_root_dir=tmp_path,
                            callbacks=[online, served])
    trainer.fit(module, datamodule=GenerationBatches(len(problems), 3, grpo.iterations, 1, seed=0))
    return served.seen, sorted((tmp_path / "generations").glob("gen_*.pt"))


def test_the_engine_serves_the_trained_weights_at_every_step_and_zero_variance_groups_are_replaced(
        tiny_dir, math_triples, tmp_path):
    seen, generations = _fit(tiny_dir, math_triples, tmp_path)
    assert len(seen) == 4  # 12 problems, 3 per step
    assert all(same for same, _ in seen), seen
    assert all(probe == 1.0 for _, probe in seen), seen  # greedy on the probe = the policy's own argmax
    for path in generations:
        data = torch.load(path, weights_only=False)
        drawn = data["drawn_rewards"]
        flat = sum(len(set(r)) == 1 for r in drawn)
        assert data["stats"]["zero_variance_share"] == pytest.approx(flat / len(drawn))
        informative = [g for g in data["groups"] if len(set(g.rewards)) > 1]
        # the batch trains its informative groups only (all of them, unless none was found)
        assert data["groups"] == informative or not informative
        assert len(data["groups"]) <= 3


def test_without_a_sync_the_engine_serves_stale_weights(tiny_dir, math_triples, tmp_path):
    """The control that shows the check above can fail: the engine takes the weights only at step 0."""
    seen, _ = _fit(tiny_dir, math_triples, tmp_path, sync_every=100)
    assert seen[0][0] and not any(same for same, _ in seen[1:]), seen


def test_an_engine_asleep_during_each_update_wakes_with_the_trained_weights(tiny_dir, math_triples, tmp_path):
    """sleep_during_update: the engine frees its weights after sampling; the next batch wakes it with the trained
    ones, and the probe (greedy = the policy's argmax) passes at every wake."""
    problems = [Problem(id=t.id, domain="math", problem=t.problem, answer=t.answer) for t in math_triples[:12]]
    engine = ServedEngine(HFEngine(tiny_dir, EngineConfig(progress=False)), tiny_dir)
    grpo = GRPOConfig(problems_per_step=3, probe_tokens=8, sleep_during_update=True, sync_every=2)  # wake = push
    online = OnlineRollouts(engine, PromptFormat.words_only("solver", PromptsConfig().solver), problems, HasSeven(),
                            load_tokenizer(tiny_dir), SamplingConfig(n=4, temperature=1.0, max_new_tokens=24), grpo,
                            tmp_path, seed=0, max_length=384)
    seen = []

    class Asleep(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((engine.engine.model is None, float(batch["stats"]["probe_match"])))

    trainer = build_trainer(TrainerConfig(enable_progress_bar=False), max_epochs=1, default_root_dir=tmp_path,
                            callbacks=[online, Asleep()])
    trainer.fit(GRPOModule(load_model(tiny_dir, "float32"), OptimConfig(lr=1e-2, warmup_ratio=0.0), grpo),
                datamodule=GenerationBatches(len(problems), 3, 1, 1, seed=0))
    assert seen == [(True, 1.0)] * 4


def test_a_grpo_round_killed_and_rerun_equals_the_uninterrupted_run(tmp_path):
    """kill -9 in the middle of a GRPO round (after a step's checkpoint, its next generation batch on disk); the rerun
    resumes it, its engine takes the resumed weights (probe 1.0), and every DONE metric and MLflow point equals the
    uninterrupted run's."""
    from mlflow.tracking import MlflowClient

    keys = ["stages=[seed,solver,selfplay]", "selfplay.optimizer=grpo", "selfplay.grpo.problems_per_step=2",
            "trainer.checkpoint_every_n_steps=1", "trainer.log_every_n_steps=1", "selfplay.rounds=1"]
    base, killed = tmp_path / "base", tmp_path / "killed"
    for cwd in (base, killed):
        cwd.mkdir()
    args = ["run", DEBUG, f"model.cache_dir={tmp_path / 'cache'}", *keys]
    promptcot(*args, cwd=base, check=True)
    round_dir = killed / "runs/tiny/main/selfplay/round_001"
    kill_when(args, killed, round_dir / "generations/gen_00003.pt")
    assert (round_dir / "checkpoints/last.ckpt").exists()
    rerun = promptcot(*args, cwd=killed, check=True)
    assert "resuming the GRPO fit" in rerun.stderr + rerun.stdout
    for stage in ("seed", "solver", "selfplay"):
        assert json.loads((killed / "runs/tiny/main" / stage / "DONE").read_text()) == \
            json.loads((base / "runs/tiny/main" / stage / "DONE").read_text()), stage

    def curves(cwd):
        client = MlflowClient(f"sqlite:///{cwd / 'mlflow/mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
        (fit,) = [r for r in runs if r.info.run_name.endswith("selfplay.round_1")]
        return {key: sorted((m.step, m.value) for m in client.get_metric_history(fit.info.run_id, key))
                for key in fit.data.metrics if "time" not in key}

    ours, theirs = curves(killed), curves(base)
    assert ours.keys() == theirs.keys() and "selfplay/grpo/reward_mean" in ours
    for key, points in theirs.items():
        assert ours[key] == points, key
    # the steps after the resume generated afresh: their engine was checked on the resumed weights
    assert all(v == 1.0 for _, v in ours["selfplay/grpo/probe_match"])
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_two_ddp_processes_train_grpo_as_one(tmp_path):
    """trainer.devices=2: each rank samples half the rollouts, trains its share of the groups; the loss is
    normalised by the whole batch, so round 2's rollouts — sampled from round 1's fitted weights — are those of
    one process."""
    keys = ["stages=[seed,solver,selfplay]", "selfplay.optimizer=grpo", "selfplay.grpo.problems_per_step=3",
            f"model.cache_dir={tmp_path / 'cache'}"]
    stats = {}
    for devices in ("1", "2"):
        cwd = tmp_path / devices
        cwd.mkdir()
        promptcot("run", DEBUG, *keys, f"trainer.devices={devices}", cwd=cwd, check=True)
        stats[devices] = [torch.load(path, weights_only=False)["drawn_rewards"]
                          for path in sorted((cwd / "runs/tiny/main/selfplay").glob("round_*/generations/gen_*.pt"))]
    assert len(stats["1"]) > 4 and stats["1"] == stats["2"]
