"""Model keys are made loadable before a stage runs (`models/checkpoints.py`): a `.gguf` file or a `pkg:` file is
converted once into a Hugging Face directory keyed by the file's digest; a key that names nothing loadable is refused
at the start, naming the key, by `promptcot check` and `promptcot run` alike."""

from pathlib import Path

import pytest
import torch

from promptcot_pl.experiment import load_config
from promptcot_pl.models.checkpoints import (
    SMOLLM2,
    ModelKeyError,
    converted_dir,
    package_file,
    resolve,
    resolve_models,
)
from tests.conftest import REPO, promptcot

QUICKSTART = REPO / "experiments" / "quickstart.yaml"


@pytest.mark.parametrize(("override", "key", "why"), [
    ("solver.path=/nonexistent/model", "solver.path", "no such directory"),
    ("sft.student=/tmp", "sft.student", "without config.json"),
    ("model.path=/nonexistent/m.gguf", "model.path", "no such GGUF file"),
    ("evaluate.model=pkg:no_such_package/m.gguf", "evaluate.model", "no installed package"),
    ("annotate.annotators=[oracle,/nonexistent/a]", r"annotate.annotators\[1\]", "no such directory"),
    ("solver.path=sft", "solver.path", "not a model this key takes"),
    ("model.path=oracle", "model.path", r"one of \['tiny'\]"),
])
def test_a_key_naming_nothing_loadable_is_refused_naming_it(override, key, why):
    cfg = load_config(QUICKSTART, [override])
    with pytest.raises(ModelKeyError, match=rf"key '{key}': .*{why}"):
        resolve_models(cfg)


def test_check_and_run_refuse_it_before_any_stage(tmp_path):
    check = promptcot("check", str(QUICKSTART), "solver.path=/nonexistent/model", cwd=tmp_path)
    assert check.returncode == 1 and "key 'solver.path': /nonexistent/model: no such directory" in check.stdout
    run = promptcot("run", str(QUICKSTART), "solver.path=/nonexistent/model", "stages=[seed,solver]", cwd=tmp_path)
    assert run.returncode != 0 and "key 'solver.path'" in run.stderr
    assert "cannot write" not in run.stderr and not (tmp_path / "runs" / "quickstart" / "main" / "seed").exists()
    no_sets = promptcot("check", str(QUICKSTART), "stages=[seed,solver,evaluate]", cwd=tmp_path)
    assert no_sets.returncode == 1 and "key 'evaluate.sets': stage evaluate needs evaluation files" in no_sets.stdout
    alone = promptcot("stage", "evaluate", str(QUICKSTART), cwd=tmp_path)  # stages= does not name it
    assert alone.returncode != 0 and "key 'evaluate.sets'" in alone.stderr and "Traceback" not in alone.stderr
    assert promptcot("check", "solver.path=tiny", cwd=tmp_path).returncode == 1  # overrides without a file
    no_sft = promptcot("check", str(QUICKSTART), "selfplay.policy=sft", "stages=[seed,solver,synth,selfplay]",
                       cwd=tmp_path)
    assert no_sft.returncode == 1 and "key 'selfplay.policy': 'sft' starts from an SFT student" in no_sft.stdout
    sets = f"evaluate.sets=[{REPO / 'tests/data/release_math_eval.jsonl'}]"
    no_student = promptcot("check", str(QUICKSTART), "evaluate.model=sft", sets, "stages=[seed,solver,evaluate]",
                           cwd=tmp_path)
    assert no_student.returncode == 1 and "key 'evaluate.model': 'sft' evaluates the better SFT student" in no_student.stdout


def test_hub_ids_and_built_words_pass_through(tmp_path):
    cfg = load_config(QUICKSTART, ["sft.teacher=oracle", "evaluate.model=selfplay"])
    resolved = resolve_models(cfg)
    assert resolved.changed == {} and resolved.cfg == cfg and resolved.cfg is not cfg
    assert resolve("Qwen/Qwen2.5-0.5B", "float32", tmp_path) == "Qwen/Qwen2.5-0.5B"


@pytest.mark.real_model
def test_the_installed_gguf_converts_once_to_the_same_weights(smollm2_cache, smollm2_dir):
    from transformers import AutoModelForCausalLM

    from promptcot_pl.models import load_model

    gguf = package_file(SMOLLM2)
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.stat().st_size > 90e6
    assert Path(smollm2_dir) == converted_dir(gguf, "float32", smollm2_cache)
    config = (Path(smollm2_dir) / "config.json").read_text()
    assert "quantization_config" not in config  # saved without GGUF's marker: loads and saves like any checkpoint
    before = (Path(smollm2_dir) / "model.safetensors").stat().st_mtime_ns
    assert resolve(SMOLLM2, "float32", smollm2_cache) == str(smollm2_dir)  # the second time: no conversion
    assert (Path(smollm2_dir) / "model.safetensors").stat().st_mtime_ns == before
    ours = load_model(smollm2_dir).eval()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 9690, 198, 2683, 359, 253, 5356, 2]])
    with torch.no_grad():
        assert torch.equal(ours(input_ids=ids).logits, direct(input_ids=ids).logits)
    assert (ours.config.num_hidden_layers, ours.config.vocab_size, ours.config.tie_word_embeddings) == (30, 49152, True)


def test_selfplay_from_sft_starts_from_the_better_student(tmp_path):
    import json

    from promptcot_pl.runner.model_paths import best_sft_student

    with pytest.raises(FileNotFoundError, match="stage sft has not finished"):
        best_sft_student(tmp_path, ["synth", "seed"])
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "DONE").write_text(json.dumps({"sft/synth/accuracy_heldout": 0.31,
                                                        "sft/seed/accuracy_heldout": 0.42}))
    assert best_sft_student(tmp_path, ["synth", "seed"]) == str(tmp_path / "sft" / "seed" / "student" / "model")
    (tmp_path / "sft" / "DONE").write_text(json.dumps({"sft/synth/accuracy_heldout": 0.42,
                                                        "sft/seed/accuracy_heldout": 0.42}))
    assert best_sft_student(tmp_path, ["synth", "seed"]).endswith("sft/synth/student/model")  # a tie: the first


def test_a_resumed_run_refuses_other_weights_behind_the_same_key(tmp_path):
    from promptcot_pl.config import ConfigError
    from promptcot_pl.pipeline import _check_same_weights

    first = {"solver.path": "/cache/gguf/SmolLM2-135M-Instruct.Q4_1-b179c9523d0e6a0f-float32"}
    _check_same_weights(tmp_path, first)
    _check_same_weights(tmp_path, {"solver.path": "/elsewhere/SmolLM2-135M-Instruct.Q4_1-b179c9523d0e6a0f-float32"})
    with pytest.raises(ConfigError, match="other weights.*b179c9523d0e6a0f-float32 → .*-0000000000000000-.*a model file changed"):
        _check_same_weights(tmp_path, {"solver.path": "/cache/gguf/SmolLM2-135M-Instruct.Q4_1-0000000000000000-float32"})
