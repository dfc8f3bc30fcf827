import shutil

import pytest

from promptcot_pl.config import ConfigError, flatten, to_yaml
from promptcot_pl.experiment import ExperimentConfig, load_config
from tests.conftest import REPO, promptcot

SHIPPED = sorted((REPO / "experiments").rglob("*.yaml"))


def test_defaults_are_typed():
    cfg = load_config()
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.coldstart.optim.lr == 2e-5 and cfg.coldstart.epochs == 2 and cfg.coldstart.batch_size == 16


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_experiment_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert path.read_text().splitlines()[0].startswith("#"), "YAML header must say what it is"
    launches = (f"promptcot run {path.relative_to(REPO)}", f"-m promptcot_pl run {path.relative_to(REPO)}")  # torchrun
    assert any(cmd in path.read_text() for cmd in launches), "header must show the exact command"


def test_yaml_and_overrides_merge_in_order(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("coldstart:\n  epochs: 5\n  optim:\n    lr: 1.0e-4\n")
    cfg = load_config(path, ["coldstart.epochs=7", "domain.name=code"])
    assert cfg.coldstart.epochs == 7 and cfg.coldstart.optim.lr == 1e-4 and cfg.domain.name == "code"
    assert cfg.name == "exp"


def test_unknown_key_names_key_file_and_closest(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  tiny:\n    hiden_size: 64\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "'model.tiny.hiden_size'" in message and "'model.tiny.hidden_size'" in message


def test_unknown_override_key_names_the_override():
    with pytest.raises(ConfigError, match=r"override 'coldstart.epoch=3'.*'coldstart.epochs'"):
        load_config(None, ["coldstart.epoch=3"])


def test_wrong_type_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("coldstart:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'coldstart.batch_size'"):
        load_config(path)


def test_literal_choice_is_checked():
    with pytest.raises(ConfigError, match=r"key 'domain.name'.*math.*code"):
        load_config(None, ["domain.name=biology"])


@pytest.mark.parametrize("override, key", [
    ("stages=[coldstart,seed]", "stages"),
    ("stages=[seed,em_typo]", "stages"),
    ("domain.heldout_fraction=1.5", "domain.heldout_fraction"),
    ("domain.source=triples", "domain.path"),
    ("coldstart.epochs=0", "coldstart.epochs"),
    ("selfplay.pass_high=0.0", "selfplay.pass_high"),
    ("selfplay.dpo.beta=0", "selfplay.dpo.beta"),
    ("selfplay.dpo.label_smoothing=0.7", "selfplay.dpo.label_smoothing"),
    ("selfplay.batch_size=0", "selfplay.batch_size"),
    ("sft.sources=[seed,web]", "sft.sources"),
    ("selfplay.min_scored_rollouts=9", "selfplay.min_scored_rollouts"),  # more than rollouts.n = 8
    ("em.eval_k=0", "em.eval_k"),
    ("synth.generators=[em,no_rationale]", "synth.generators"),  # with em.no_rationale_baseline=false below
    ("sft.epochs=0", "sft.epochs"),
    # lengths cross-checked at load: nothing may be cut or silently dropped later (defaults: max_length 640,
    # em.max_rationale_tokens 128, the tiny model's 1024 positions)
    ("selfplay.rollouts.max_new_tokens=640", "selfplay.rollouts.max_new_tokens"),
    ("synth.sampling.max_new_tokens=700", "synth.sampling.max_new_tokens"),
    ("em.max_rationale_tokens=200", "data.max_length"),  # 640 + 2 × 200 > 1024 positions
    ("data.max_length=900", "data.max_length"),
    ("prompts.solver.system=Be brief.", "prompts.solver.system"),  # with style raw below
    ("prompts.rationale_model.wording=release", "prompts.rationale_model.wording"),
    ("model.tiny.thinking=true", "model.tiny.thinking"),  # with style llama3 below
    # free-text and sampling fields fail at load, not when their stage first runs
    ("selfplay.rollouts.top_p=0", "selfplay.rollouts.top_p"),
    ("synth.sampling.n=0", "synth.sampling.n"),
    ("analyze.temperature=-1", "analyze.temperature"),
    ("engine.device=gpu", "engine.device"),
    ("trainer.precision=bf16", "trainer.precision"),
])
def test_semantic_errors_name_the_key(override, key):
    extra = {"prompts.solver.system": ["prompts.solver.style=raw"], "model.tiny.thinking": ["model.tiny.style=llama3"],
             "synth.generators": ["em.no_rationale_baseline=false"]}
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_config(None, [override, *extra.get(key, [])])


def test_vllm_max_model_len_is_checked_against_the_longest_sequence():
    with pytest.raises(ConfigError, match=r"key 'data.max_length'.*= 896 tokens exceed engine.max_model_len=800"):
        load_config(None, ["engine.backend=vllm", "engine.max_model_len=800"])
    load_config(None, ["engine.backend=vllm", "engine.max_model_len=896"])


def test_check_refuses_a_chat_format_for_a_tokenizer_without_a_template(tmp_path, tiny_dir):
    from promptcot_pl.models import load_tokenizer

    plain = tmp_path / "no_template"
    tokenizer = load_tokenizer(tiny_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    shutil.copy(tiny_dir / "config.json", plain / "config.json")  # a checkpoint, as model keys must name
    experiment = tmp_path / "x.yaml"
    experiment.write_text(f"solver:\n  path: {plain}\n")
    failed = promptcot("check", str(experiment), cwd=tmp_path)
    assert failed.returncode == 1
    assert "key 'prompts.solver.style': 'chat', but the tokenizer of solver.path=" in failed.stdout
    experiment.write_text(f"solver:\n  path: {plain}\nprompts:\n  solver:\n    style: raw\n")
    assert promptcot("check", str(experiment), cwd=tmp_path).returncode == 0


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["coldstart.epochs"])
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_yaml_round_trips(tmp_path):
    cfg = load_config(None, ["coldstart.epochs=9", "name=x"])
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(cfg))
    again = load_config(path)
    assert flatten(again) == flatten(cfg)


def test_check_cli_reports_good_and_bad_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("coldstrat:\n  epochs: 1\n")
    ok = promptcot("check", str(REPO / "experiments/quickstart.yaml"), cwd=tmp_path)
    assert ok.returncode == 0 and "ok" in ok.stdout
    failed = promptcot("check", str(REPO / "experiments/quickstart.yaml"), str(bad), cwd=tmp_path)
    assert failed.returncode == 1
    assert "unknown key 'coldstrat'" in failed.stdout and "did you mean 'coldstart'" in failed.stdout


def test_run_with_misspelt_key_fails_before_doing_anything(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("domain:\n  n_itemz: 10\n")
    proc = promptcot("run", str(bad), cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown key 'domain.n_itemz'" in proc.stderr and "'domain.n_items'" in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow").exists()


def test_help_lists_verbs_and_imports_no_heavy_library(tmp_path):
    proc = promptcot("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for verb in ("run", "stage", "check", "ui"):
        assert verb in proc.stdout
    # --help stays fast because torch, Lightning and MLflow are imported lazily by the verbs.
    import subprocess
    import sys

    probe = ("import sys\nfrom promptcot_pl.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n"
             "    pass\nprint(sorted(m for m in ('torch', 'lightning', 'mlflow', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_memory_budget_and_renamed_keys_are_checked_at_load():
    from promptcot_pl.config import ConfigError
    from promptcot_pl.experiment import load_config

    resident = ["engine.backend=vllm", "engine.release_during_fits=false", "engine.gpu_memory_utilization=0.5"]
    with pytest.raises(ConfigError, match=r"engine.gpu_memory_utilization.*trainer.memory_fraction"):
        load_config(None, resident + ["trainer.memory_fraction=0.6"])
    load_config(None, resident + ["trainer.memory_fraction=0.45"])  # fits together
    load_config(None, resident[:1] + ["engine.gpu_memory_utilization=0.9"])  # asleep during fits: no sum
    with pytest.raises(ConfigError, match="trainer.memory_fraction.*got 1.5"):
        load_config(None, ["trainer.memory_fraction=1.5"])
    with pytest.raises(ConfigError, match="em.score_batch_size' was replaced by trainer.score_tokens"):
        load_config(None, ["em.score_batch_size=8"])
    with pytest.raises(ConfigError, match="engine.shard_prompts': must be at least 1"):
        load_config(None, ["engine.shard_prompts=0"])


def test_every_problem_of_a_file_is_reported_at_once_each_blamed_on_its_source(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("coldstart:\n  epoch: 3\n  batch_size: 0\nem:\n  selection: softmax\n  tau: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["em.k=0"])
    lines = str(err.value).splitlines()
    assert lines[0] == "4 problems:"
    assert f"  {path}: unknown key 'coldstart.epoch'; did you mean 'coldstart.epochs'?" in lines
    assert f"  {path}: key 'coldstart.batch_size': must be at least 1" in lines  # the file's other keys still checked
    assert f"  {path}: key 'em.tau': must be > 0 for softmax selection" in lines
    assert "  override 'em.k=0': key 'em.k': must be at least 1" in lines  # the override's value, not the file's
