"""Every training, validation and scoring step makes its tensors on the device of its inputs, so the first step on
a GPU does not stop on a tensor left on the CPU (`torch.stack`/`cat` refuse mixed devices; only elementwise ops
take a 0-dim CPU tensor beside a CUDA one).

Without a GPU the hazard is reproduced the other way round: the model and the batches stay on the CPU and, inside
each step, the default device of new tensors is `meta` (`torch.device("meta")` as a context). A tensor made
without `device=` then lands on `meta`, and mixing it with the CPU tensors raises exactly where CUDA would
("Tensor on device meta is not on the expected device cpu!"). Putting the model and the batch on `meta` instead
is impossible: a step runs data-dependent ops (`nonzero` picks the scored positions) that `meta` cannot.
Lightning's own `log` runs with the CPU default, as on a GPU (it moves what it makes).

Each module's real step runs through its real DataModule, collate and `build_trainer`: WeightedNLLModule for every
kind of fit (padded, packed, weighted E-step batches, validation), DPO (precomputed reference, frozen reference,
RPO), the SequenceScorer (padded and prefix-shared rows), and the token accounting callback that runs after every
step. The static half, `test_no_tensor_factory_without_a_device_in_step_code`, reads the code that runs inside
steps and flags any tensor factory called without `device=`.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import lightning as L
import pytest
import torch

from promptcot_pl.accounting import TokenAccounting
from promptcot_pl.config import OptimConfig, TrainerConfig
from promptcot_pl.data.collate import encode_pair, pad_batch, target_count
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import rationale_model_example, solver_example
from promptcot_pl.data.sharding import sharded_loader
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import SequenceScorer, WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.runner.scoring import score_pairs
from promptcot_pl.stages.selfplay.config import DPOConfig
from promptcot_pl.stages.selfplay.data import PreferenceDataModule, encode_preferences
from promptcot_pl.stages.selfplay.module import DPOModule
from promptcot_pl.trainer import build_trainer
from tests.conftest import REPO

CPU = TrainerConfig(accelerator="cpu", enable_progress_bar=False, log_every_n_steps=1)


def _on(device: str, method):
    @functools.wraps(method)
    def run(*args, **kwargs):
        with torch.device(device):
            return method(*args, **kwargs)

    return run


@pytest.fixture
def factories_on_meta(monkeypatch):
    """Steps (and the accounting after each) run with `meta` as the default device of new tensors."""
    for cls, names in [(WeightedNLLModule, ["training_step", "validation_step"]), (DPOModule, ["training_step"]),
                       (SequenceScorer, ["predict_step"]), (TokenAccounting, ["on_train_batch_end"])]:
        for name in names:
            monkeypatch.setattr(cls, name, _on("meta", getattr(cls, name)))
    for name in ("log", "log_dict"):
        monkeypatch.setattr(L.LightningModule, name, _on("cpu", getattr(L.LightningModule, name)))


def _trainer(tmp_path) -> L.Trainer:
    return build_trainer(CPU, max_epochs=1, max_steps=2, default_root_dir=tmp_path)


def _solver_pairs(triples):
    return [solver_example(default_format("solver"), t.problem, t.solution) for t in triples]


def test_the_meta_default_catches_a_cpu_tensor_beside_the_batch():
    """The stand-in raises on the bug it stands in for (a count made without a device, stacked with counts on the
    batch's device) and lets device-clean code through."""
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long)}
    count = batch["input_ids"].sum()
    with torch.device("meta"), pytest.raises(RuntimeError, match="not on the expected device"):
        torch.stack([count, torch.tensor(batch["input_ids"].numel())])
    with torch.device("meta"):
        assert torch.stack([count, torch.tensor(batch["input_ids"].numel(), device=count.device)]).device.type == "cpu"


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_likelihood_fit_and_validation_steps(tiny_dir, math_triples, tmp_path, factories_on_meta, packing):
    pairs = _solver_pairs(math_triples[:24])
    data = PairDataModule(load_tokenizer(tiny_dir), pairs[:16], pairs[16:], batch_size=8, max_length=256,
                          packing=packing)
    module = WeightedNLLModule(load_model(tiny_dir), OptimConfig(lr=1e-3))
    trainer = _trainer(tmp_path)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2 and 0.0 <= trainer.callback_metrics["train/padding_waste"] < 1.0
    (result,) = trainer.validate(module, datamodule=data, verbose=False)
    assert result["val/nll"] > 0


def test_weighted_e_step_batches(tiny_dir, math_triples, tmp_path, factories_on_meta):
    """The E-step's batches: rows with weights, through the global-batch loader with accumulation windows."""
    tokenizer = load_tokenizer(tiny_dir)
    items = []
    for i, t in enumerate(math_triples[:12]):
        prompt, target = rationale_model_example(default_format("rationale_model"), t.concepts, t.level, t.problem,
                                                 t.rationale)
        item = encode_pair(tokenizer, prompt, target, 512)
        assert item is not None
        item.weight = 0.25 + 0.05 * i
        items.append(item)
    loader = sharded_loader(items, 4, shuffle=True, seed=0, collate=functools.partial(pad_batch, pad_id=0),
                            counts=[target_count(e) for e in items], window=1)
    module = WeightedNLLModule(load_model(tiny_dir), OptimConfig(lr=1e-3), loss_name="em/e_loss")
    trainer = _trainer(tmp_path)
    trainer.fit(module, loader)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["em/e_loss"])


DPO_PAIRS = [(f"Problem:\nWhat is {a} + {b}?\nSolution:\n", f"The answer is $\\boxed{{{a + b}}}$.",
              f"Add: {a}+{b}. The answer is $\\boxed{{{a * b + 1}}}$.") for a, b in [(2, 3), (10, 7), (4, 4), (5, 1)]]


@pytest.mark.parametrize("reference", ["precomputed", "frozen_model"])
def test_dpo_steps(tiny_dir, tmp_path, factories_on_meta, reference):
    tokenizer = load_tokenizer(tiny_dir)
    rows, kept = encode_preferences(tokenizer, DPO_PAIRS, max_length=256)
    ref = torch.randn(len(DPO_PAIRS), 2) - 30.0 if reference == "precomputed" else None
    data = PreferenceDataModule(rows, tokenizer.pad_token_id, batch_size=2, ref=ref)
    module = DPOModule(load_model(tiny_dir), OptimConfig(lr=1e-3), DPOConfig(rpo_weight=0.5),
                       ref_model=load_model(tiny_dir) if ref is None else None)
    trainer = _trainer(tmp_path)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["selfplay/rewards_margin"])


@pytest.mark.parametrize("share_prefix", [True, False], ids=["prefix-shared", "padded"])
def test_scoring_steps(tiny_dir, math_triples, tmp_path, factories_on_meta, share_prefix):
    pairs = [(p, t) for p, t in _solver_pairs(math_triples[:3]) for _ in range(2)]
    logprobs, tokens = score_pairs(tiny_dir, pairs, trainer_cfg=CPU, max_length=256, root_dir=tmp_path,
                                   share_prefix=share_prefix)
    assert torch.isfinite(logprobs).all() and (tokens > 0).all()


# The static half: code that runs inside steps (LightningModules, the losses and the LM-head path they call) makes
# no tensor without saying where. Collate functions are not listed: they build CPU batches on purpose, which
# Lightning moves to the device.
STEP_CODE = ["promptcot_pl/modules", "promptcot_pl/losses", "promptcot_pl/models/head.py",
             "promptcot_pl/stages/selfplay/module.py", "promptcot_pl/accounting.py"]
FACTORIES = {"tensor", "as_tensor", "zeros", "ones", "full", "empty", "arange", "linspace", "eye", "rand", "randn",
             "randint", "scalar_tensor"}
# Where a device-less factory is right: checkpoint state, read on the host (named here, so that a new one is seen)
ALLOWED = {("promptcot_pl/accounting.py", "__init__"), ("promptcot_pl/accounting.py", "load_state_dict")}


def device_less_factories(path: Path, root: Path) -> list[str]:
    """`file:line function` of every `torch.<factory>(...)` call without a `device=` keyword in `path`."""
    tree = ast.parse(path.read_text())
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if (str(path.relative_to(root)), function.name) in ALLOWED:
            continue
        for call in ast.walk(function):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in FACTORIES
                    and isinstance(call.func.value, ast.Name) and call.func.value.id == "torch"
                    and not any(k.arg == "device" for k in call.keywords)):
                found.append(f"{path.relative_to(root)}:{call.lineno} {function.name}: torch.{call.func.attr}")
    return sorted(set(found))


def step_code_files(root: Path) -> list[Path]:
    return sorted(p for entry in STEP_CODE for p in ([root / entry] if entry.endswith(".py")
                                                      else (root / entry).rglob("*.py")))


def test_no_tensor_factory_without_a_device_in_step_code():
    offenders = [hit for path in step_code_files(REPO) for hit in device_less_factories(path, REPO)]
    assert not offenders, "tensor factories without device= in step code:\n" + "\n".join(offenders)


def test_the_static_check_flags_a_factory_without_a_device(tmp_path):
    planted = tmp_path / "promptcot_pl/modules/planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("import torch\n\ndef training_step(batch):\n"
                       "    a = torch.tensor(batch.numel(), device=batch.device)\n"
                       "    return torch.stack([a, torch.tensor(batch.numel())])\n")
    assert device_less_factories(planted, tmp_path) == [
        "promptcot_pl/modules/planted.py:5 training_step: torch.tensor"]
