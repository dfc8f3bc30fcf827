"""Model loading at scale: under multi-process FSDP only rank 0 reads the checkpoint; rank 1 builds
the model on the meta device, and FSDP fills its shards from rank 0 — exactly, tied weights included."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptcot_pl import distributed
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _run(model_dir: Path, tmp_path: Path) -> dict:
    out = tmp_path / "report.json"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["torchrun", "--standalone", "--nproc-per-node=2", str(REPO / "tests/fsdp_meta_init.py"),
                           str(model_dir), str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert distributed.KEPT not in proc.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_rank_one_builds_empty_and_fsdp_fills_it_from_rank_zero(tiny_dir, tmp_path, tied):
    from promptcot_pl.models import load_model, load_tokenizer

    model_dir = tiny_dir
    if tied:  # small Qwen checkpoints tie the LM head to the embedding
        model = load_model(tiny_dir)
        model.config.tie_word_embeddings = True
        model.lm_head.weight = model.model.embed_tokens.weight
        model_dir = tmp_path / "tied"
        model.save_pretrained(model_dir)
        load_tokenizer(tiny_dir).save_pretrained(model_dir)
    report = _run(model_dir, tmp_path)
    assert report["empty_by_rank"] == [False, True]
    assert report["equal"] and report["missing"] == [], report
    assert report["steps"] == 1
