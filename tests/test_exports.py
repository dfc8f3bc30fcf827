"""A fitted model is exported in the serving dtype (`model.dtype`: bf16 is half the disk of the fp32 training copy)
with its fp32 masters beside it, from which the next fit continues exactly; chains drop the masters no later fit
reads."""

import json
import shutil

import lightning as L
import torch
from safetensors import safe_open

from promptcot_pl.config import EngineConfig, OptimConfig, SamplingConfig, TrainerConfig
from promptcot_pl.generation import build_engine
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.runner.fit import drop_masters, export_trained
from promptcot_pl.runner.scoring import score_pairs
from promptcot_pl.trainer import MASTERS, build_trainer, load_for_fit

PAIRS = [(f"Problem:\nWhat is {a} + 1?\nSolution:\n", f"{a + 1}") for a in range(16)]
CPU = TrainerConfig(accelerator="cpu", enable_progress_bar=False)


def _fit_and_export(tiny_dir, target, dtype: str):
    data = PairDataModule(load_tokenizer(tiny_dir), PAIRS, PAIRS[:4], batch_size=4, max_length=64)
    module = WeightedNLLModule(load_for_fit(tiny_dir, CPU), OptimConfig(lr=1e-3))
    trainer = build_trainer(CPU, max_epochs=1, default_root_dir=target.parent)
    trainer.fit(module, datamodule=data)
    export_trained(trainer, load_tokenizer(tiny_dir), target, dtype)
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


def _stored_dtypes(directory) -> set[torch.dtype]:
    with safe_open(str(directory / "model.safetensors"), "pt") as handle:
        return {handle.get_tensor(name).dtype for name in handle.keys()}


def test_a_bf16_export_keeps_fp32_masters_for_the_next_fit(tiny_dir, tmp_path):
    L.seed_everything(0, verbose=False)
    trained = _fit_and_export(tiny_dir, tmp_path / "fit" / "model", "bfloat16")
    export = tmp_path / "fit" / "model"
    assert _stored_dtypes(export) == {torch.bfloat16}
    assert json.loads((export / "config.json").read_text())["dtype"] == "bfloat16"
    assert _stored_dtypes(export / MASTERS) == {torch.float32}
    size = (export / "model.safetensors").stat().st_size
    assert size < 0.55 * (export / MASTERS / "model.safetensors").stat().st_size
    # the next fit starts from the exact fp32 result; the engines serve the bf16 export
    again = load_for_fit(export, CPU).state_dict()
    assert all(torch.equal(again[k], v) for k, v in trained.items())
    served = load_model(export, "bfloat16").state_dict()
    assert all(torch.equal(served[k], v.to(torch.bfloat16)) for k, v in trained.items())
    engine = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), export, dtype="bfloat16")
    (completion,) = engine.generate([PAIRS[0][0]], SamplingConfig(temperature=0, max_new_tokens=4))[0]
    assert completion.token_ids
    # a bf16-true fit has no wider masters: it continues from its own storage
    assert load_for_fit(export, TrainerConfig(precision="bf16-true")).dtype == torch.bfloat16


def test_scoring_reads_the_weights_the_next_fit_starts_from(tiny_dir, tmp_path):
    """A DPO reference (scored) and its policy (fitted) are the same weights — the masters, not their bf16
    rounding — so the policy starts exactly at its reference."""
    L.seed_everything(0, verbose=False)
    _fit_and_export(tiny_dir, tmp_path / "fit" / "model", "bfloat16")
    export = tmp_path / "fit" / "model"
    masters = tmp_path / "masters_alone"
    shutil.copytree(export / MASTERS, masters)
    load_tokenizer(tiny_dir).save_pretrained(masters)
    rounded = tmp_path / "rounded"
    load_model(export, "bfloat16").save_pretrained(rounded)
    load_tokenizer(tiny_dir).save_pretrained(rounded)
    scores = {name: score_pairs(path, PAIRS[:6], trainer_cfg=CPU, max_length=64, root_dir=tmp_path)[0]
              for name, path in [("export", export), ("masters", masters), ("rounded", rounded)]}
    assert torch.equal(scores["export"], scores["masters"])
    assert not torch.allclose(scores["export"], scores["rounded"], atol=1e-6, rtol=0)  # bf16 rounding shows


def test_an_export_in_the_training_dtype_has_no_masters(tiny_dir, tmp_path):
    _fit_and_export(tiny_dir, tmp_path / "fit" / "model", "float32")
    assert _stored_dtypes(tmp_path / "fit" / "model") == {torch.float32}
    assert not (tmp_path / "fit" / "model" / MASTERS).exists()


def test_a_chain_keeps_only_the_masters_its_next_fit_reads(tmp_path):
    models = [tmp_path / f"iter_{i:03d}" / name for i in (1, 2) for name in ("rationale_model", "prompt_model")]
    for model in models:
        (model / MASTERS).mkdir(parents=True)
        (model / MASTERS / "config.json").write_text("{}")
        (model / "config.json").write_text("{}")
    drop_masters([models[2], models[1]], models)  # q of iteration 2, p carried over from iteration 1
    assert [(m / MASTERS).exists() for m in models] == [False, True, True, False]
