"""Half-precision fits keep RoPE's frequencies in fp32 (promptcot_pl/precision.py): under FSDP `bf16-mixed` (the
paper recipes) Lightning's own policy casts every buffer to bf16 (`inv_freq` off by up to 3.7e-3 relative, a
rotary angle error that grows with the distance between tokens), and its `bf16-true` converts buffers with the
module. After FSDP steps through `build_trainer` the buffer is fp32 and exact, and log-probs scored under FSDP
equal the plain fp32 model's to bf16 compute's noise (measured: at most 1e-3 nats per token)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from promptcot_pl import distributed
from promptcot_pl.config import OptimConfig, TrainerConfig
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.trainer import build_trainer, load_for_fit
from tests.conftest import REPO

PAIRS = [(f"Problem:\nWhat is {a} + 1?\nSolution:\n", f"{a + 1}") for a in range(8)]


def _fsdp(model_dir: Path, precision: str, tmp_path: Path) -> dict:
    out = tmp_path / "report.json"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["torchrun", "--standalone", "--nproc-per-node=1", str(REPO / "tests/fsdp_precision.py"),
                           str(model_dir), precision, str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert distributed.KEPT not in proc.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_fsdp_half_precision_keeps_rope_in_fp32_and_scores_like_the_plain_model(tiny_dir, tmp_path, precision):
    report = _fsdp(tiny_dir, precision, tmp_path)
    assert report["steps"] == 2
    assert report["checkpointed"] == report["layers"] > 0  # every decoder layer recomputes its activations
    assert report["dtype"] == "float32" and report["max_rel_err"] == 0.0, report
    assert report["reduce_dtype"] == "float32"  # gradients are reduce-scattered in fp32 (Lightning's: bf16)
    assert min(report["tokens"]) > 300  # long rows: distant positions are scored
    for fsdp, plain in zip(report["fsdp_per_token"], report["plain_per_token"]):
        assert fsdp == pytest.approx(plain, abs=2e-3)


def test_bf16_true_on_one_device_keeps_buffers_and_batches(tiny_dir, tmp_path):
    """Lightning's `bf16-true` converts the module (buffers too) and every floating tensor of a batch; ours
    converts parameters only and leaves the batch (the accumulation window's count here) exact."""
    cfg = TrainerConfig(precision="bf16-true", bf16_true_optimizer="kahan", accelerator="cpu",
                        enable_progress_bar=False)
    seen: dict = {}

    class Look(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen["window_count"] = batch["window_count"].dtype
            seen["inv_freq"] = module.model.model.rotary_emb.inv_freq.dtype
            seen["weights"] = module.model.lm_head.weight.dtype

    data = PairDataModule(load_tokenizer(tiny_dir), PAIRS, PAIRS[:2], batch_size=4, max_length=64)
    trainer = build_trainer(cfg, max_epochs=None, max_steps=1, default_root_dir=tmp_path, callbacks=[Look()])
    trainer.fit(WeightedNLLModule(load_for_fit(tiny_dir, cfg), OptimConfig(lr=1e-3)), datamodule=data)
    reference = load_model(tiny_dir).model.rotary_emb.inv_freq
    assert seen == {"window_count": torch.float32, "inv_freq": torch.float32, "weights": torch.bfloat16}
    assert torch.equal(trainer.lightning_module.model.model.rotary_emb.inv_freq, reference)
