"""Weight-decay groups are chosen by parameter name (transformers' rule), so FSDP — which flattens parameters into
1-D shards before the optimizer is built — gets the same groups as DDP and one process, with decay > 0:
grouped by `p.ndim`, every FSDP parameter would fall into the no-decay group."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptcot_pl import distributed
from tests.conftest import REPO

SCRIPT = str(REPO / "tests/optimizer_groups.py")


def _groups(tiny_dir, tmp_path: Path, strategy: str, processes: int) -> list[dict]:
    out = tmp_path / f"{strategy}{processes}.json"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    launcher = ["torchrun", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else [sys.executable]
    proc = subprocess.run([*launcher, SCRIPT, str(tiny_dir), str(out), strategy], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert distributed.KEPT not in proc.stderr
    return json.loads(out.read_text())


def test_the_groups_name_norms_and_biases_only():
    from transformers import LlamaConfig, LlamaForCausalLM

    from promptcot_pl.modules.optim import parameter_groups

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    decay, no_decay = parameter_groups(model)
    assert no_decay == ["model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
                        "model.norm.weight"]
    assert sorted(decay) == sorted(n for n, p in model.named_parameters() if p.ndim >= 2)


@pytest.mark.slow
def test_fsdp_ddp_and_one_process_build_the_same_groups_with_decay(tiny_dir, tmp_path):
    one = _groups(tiny_dir, tmp_path, "auto", 1)
    ddp = _groups(tiny_dir, tmp_path, "ddp", 2)
    fsdp = _groups(tiny_dir, tmp_path, "fsdp", 2)
    def groups(run):
        return [(g["weight_decay"], g["names"]) for g in run]

    assert groups(one) == groups(ddp) == groups(fsdp)
    assert {d for g in fsdp for d in g["ndim"]} == {1}  # FSDP's flat shards: an ndim rule would decay nothing
    decayed = [g for g in fsdp if g["weight_decay"] > 0]
    assert len(decayed) == 1 and decayed[0]["weight_decay"] == 0.1 and len(decayed[0]["names"]) > 3
    assert all("norm" in n for g in fsdp if g["weight_decay"] == 0 for n in g["names"])
