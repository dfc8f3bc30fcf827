"""Multi-process runs on CPU (gloo), through the same launch commands as the README's "Scaling out":

- the debug pipeline under 2-process DDP (`torchrun`) trains exactly like 1 process with the same global batch;
- `fabric run` launches the same way;
- a 2-process FSDP fit (`trainer.devices=2`, which relaunches itself under torchrun) writes sharded checkpoints,
  resumes from them after a kill -9 and exports a full HF model that loads and generates;
- HF generation sharded over 2 ranks returns exactly the single-process completions.

Tolerance for "the same losses": relative 1e-4 or absolute 1e-4, whichever is larger. The two runs do the same
arithmetic in a different order — each rank sums its half of a batch, then the sums are all-reduced, and DDP
averages the gradients — so fp32 rounding differs by ~1e-7 per step and compounds through Adam. Measured worst case
over the whole debug pipeline (2026-12-01): 2.3e-4 relative = 1.9e-5 absolute, on one batch's solver train/loss
(0.083) after 199 steps at lr 5e-3; 1.5e-5 relative on every validation NLL. The absolute floor is set by the loss
scale the compounding starts from (~6 nats), not by the small value a converged fit reaches. Any real difference
(a batch dropped, counted twice, or a mean of rank means instead of a global mean) moves these losses by 1e-3 or
more.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from promptcot_pl import distributed
from tests.conftest import REPO, kill_when

pytestmark = pytest.mark.slow
DEBUG = str(REPO / "experiments/debug/tiny.yaml")
TORCHRUN = ["torchrun", "--standalone", "--nproc-per-node", "2", "-m", "promptcot_pl"]  # README: Scaling out
RTOL, ATOL = 1e-4, 1e-4


def launch(command: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # torchrun / fabric of this venv
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert distributed.KEPT not in proc.stderr, proc.stderr[-5000:]  # every rank left the group cleanly
    return proc


def stage_metrics(run_dir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for done in sorted(run_dir.glob("*/DONE")):
        out.update(json.loads(done.read_text() or "{}"))
    return out


def curves(cwd: Path, experiment: str = "tiny") -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Every metric history in the run's MLflow store, by (run name, key)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{cwd}/mlflow/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        for key in run.data.metrics:
            history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
            out[(run.info.run_name, key)] = [(m.step, m.value) for m in history]
    return out


def assert_close(a: float, b: float, what: str) -> None:
    assert math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL), f"{what}: {a} vs {b}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The debug pipeline once in 1 process and once in 2 DDP processes (torchrun), each with its own store."""
    root = tmp_path_factory.mktemp("scale")
    cache = f"model.cache_dir={root / 'cache'}"
    one, two = root / "one", root / "two"
    one.mkdir(), two.mkdir()
    launch([sys.executable, "-m", "promptcot_pl", "run", DEBUG, cache], cwd=one)
    proc = launch([*TORCHRUN, "run", DEBUG, cache], cwd=two)
    return root, cache, one, two, proc


def test_ddp_two_processes_train_exactly_like_one(runs):
    _, _, one, two, proc = runs
    assert "[promptcot rank 0] stage sft: starting" in proc.stdout
    assert "[promptcot rank 1]" not in proc.stdout  # progress is logged once
    a, b = curves(one), curves(two)
    assert set(a) == set(b)
    losses = [k for k in a if k[1] in ("train/loss", "val/nll")]
    fits = {name for name, _ in losses}
    assert {"coldstart.rationale_model", "coldstart.prompt_model", "solver.fit", "selfplay.round_1",
            "sft.seed/student"} <= fits
    # padding waste is the one quantity that should differ: each rank pads its share of a batch only to that
    # share's longest row, so two ranks pad less than one
    compared = [k for k in a if "padding_waste" not in k[1] and "/accounting/" not in k[1]]  # costs differ
    assert len(compared) > 50
    for key in compared:
        assert [s for s, _ in a[key]] == [s for s, _ in b[key]], f"{key}: different steps"
        for (step, x), (_, y) in zip(a[key], b[key]):
            margin = dict(a.get((key[0], "selfplay/rewards_margin"), []))
            if key[1] == "selfplay/rewards_accuracy" and abs(margin.get(step, 1.0)) < 1e-3:
                continue  # the policy is still its reference: chosen vs rejected is decided by rounding noise
            if key[1] == "selfplay/epoch/rewards_accuracy":
                continue  # a mean over steps that includes those rounding-decided ties
            if key[0] == "selfplay" and step >= 1:
                # sampled from a policy the round trained: the two fits agree to ~1e-6, and a sample drawn from
                # weights that differ there can still flip a token (48 vs 49 invalid rollouts in round 2)
                assert abs(x - y) <= 0.05 * max(abs(x), abs(y), 1.0), f"{key} at step {step}: {x} vs {y}"
                continue
            assert_close(x, y, f"{key} at step {step}")
    # every stage's final metrics too: EM bounds, synthesized problem counts, self-play accuracy, ...
    ma, mb = stage_metrics(one / "runs/tiny/main"), stage_metrics(two / "runs/tiny/main")
    assert set(ma) == set(mb) and len(ma) > 30
    for key in (k for k in ma if "padding_waste" not in k):
        if key.startswith("selfplay/"):  # sampled after a trained round, as above
            assert abs(ma[key] - mb[key]) <= 0.05 * max(abs(ma[key]), abs(mb[key]), 1.0), key
            continue
        assert_close(ma[key], mb[key], key)


def test_only_rank_zero_tracks_and_writes(runs):
    _, _, _, two, _ = runs
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{two}/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    parents = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "tiny/main"]
    assert len(parents) == 1  # one parent run, not one per rank
    assert not list((two / "runs").rglob("*.tmp*"))


def test_fabric_run_launches_the_same_pipeline(runs):
    root, cache, one, _, _ = runs
    cwd = root / "fabric"
    cwd.mkdir()
    promptcot = shutil.which("promptcot", path=str(Path(sys.executable).parent))
    launch(["fabric", "run", "--accelerator", "cpu", "--devices", "2", promptcot, "run", DEBUG,
            "stages=[seed,coldstart]", cache], cwd=cwd)
    ma, mb = stage_metrics(one / "runs/tiny/main"), stage_metrics(cwd / "runs/tiny/main")
    for key in mb:
        assert_close(ma[key], mb[key], key)
    assert "coldstart/p_nll_heldout" in mb


def test_fsdp_fit_writes_shards_resumes_after_kill_and_exports_a_full_model(runs):
    root, cache, one, _, _ = runs
    cwd = root / "fsdp"
    cwd.mkdir()
    args = ["run", DEBUG, "stages=[seed,coldstart]", "trainer.strategy=fsdp", "trainer.devices=2", cache]
    fit_dir = cwd / "runs/tiny/main/coldstart/rationale_model"
    # a sharded checkpoint is a directory: one file per rank plus the .metadata written last
    kill_when(args, cwd, fit_dir / "checkpoints/last.ckpt/.metadata")
    shards = sorted(p.name for p in (fit_dir / "checkpoints/last.ckpt").iterdir())
    assert ".metadata" in shards and sum(name.endswith(".distcp") for name in shards) == 2, shards
    assert not (fit_dir / "DONE").exists()

    proc = launch([sys.executable, "-m", "promptcot_pl", *args], cwd=cwd)
    assert "resuming from" in proc.stdout and "stage seed: already done" in proc.stdout
    metrics = json.loads((fit_dir / "metrics.json").read_text())
    assert metrics["steps"] == 48  # 4 epochs × 12 global batches, none repeated after the resume
    # killed mid-epoch, resumed from the shards, and still exactly the uninterrupted 1-process result: the
    # data continues at the batch where the checkpoint stopped (trainer.ResumeMidEpoch)
    done, reference = stage_metrics(cwd / "runs/tiny/main"), stage_metrics(one / "runs/tiny/main")
    for key in done:
        assert_close(done[key], reference[key], f"FSDP {key}")
    assert len(done) == 9  # seed 3, coldstart 6 (NLLs before/after and drops for length of both fits)

    # the export holds the full weights: it loads as a plain HF model and generates
    import torch
    from transformers import AutoModelForCausalLM

    from promptcot_pl.config import EngineConfig, SamplingConfig
    from promptcot_pl.generation.hf import HFEngine

    model = AutoModelForCausalLM.from_pretrained(fit_dir / "model")
    expected = sum(p.numel() for p in AutoModelForCausalLM.from_config(model.config).parameters())
    assert sum(p.numel() for p in model.parameters()) == expected
    assert all(torch.isfinite(p).all() for p in model.parameters())
    engine = HFEngine(fit_dir / "model", EngineConfig(progress=False, device="cpu"))
    (group,) = engine.generate(["Concepts: fractions\n"], SamplingConfig(temperature=0.0, max_new_tokens=16))
    assert len(group[0].token_ids) > 0


def test_generation_sharded_over_two_ranks_equals_one_process(tiny_dir, tmp_path):
    from promptcot_pl.config import EngineConfig, SamplingConfig
    from promptcot_pl.generation.hf import HFEngine

    out = tmp_path / "sharded.json"
    launch(["torchrun", "--standalone", "--nproc-per-node", "2", str(REPO / "tests/sharded_generate.py"),
            str(tiny_dir), str(out)], cwd=tmp_path, timeout=300)
    sharded = json.loads(out.read_text())
    from tests.sharded_generate import PROMPTS, SETTINGS

    engine = HFEngine(tiny_dir, EngineConfig(progress=False, device="cpu", batch_token_budget=SETTINGS["budget"]))
    for name, sampling in SETTINGS["sampling"].items():
        single = [[c.text for c in group] for group in engine.generate(PROMPTS, SamplingConfig(**sampling))]
        assert sharded[name] == single, name
    assert len(set(map(str, sharded["greedy"]))) > 1  # the prompts lead to different completions


def test_gpu_check_runs_its_code_path_on_cpu(tmp_path):
    """bench/gpu_check.sh cannot be measured here (no GPU); its smoke mode runs the same code on CPU: the FSDP
    bf16-mixed fit step through the real DataModule, an engine refresh after a fit, the whole debug pipeline."""
    proc = launch(["bash", str(REPO / "bench/gpu_check.sh"), "--smoke"], cwd=tmp_path, timeout=600)
    table = proc.stdout[proc.stdout.index("| check | result |"):]
    assert "| RoPE inv_freq after the steps | float32 |" in table
    assert re.search(r"\| fit tokens/s \| [\d,]+ \|", table)
    assert "greedy = a fresh engine on them: True; changed: True" in table
    assert re.search(r"\| pipeline \| 8 stages in \d+ s \(HF engine\), \d+ fits .* new weights loaded in place \|",
                     table)
    assert all(f"| {stage} |" in table for stage in ("coldstart", "em", "selfplay", "sft"))
