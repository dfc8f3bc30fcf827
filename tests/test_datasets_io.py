"""Data in and out through Hugging Face `datasets`: a seed corpus, concept rows or an evaluation set may be a
parquet file, a `save_to_disk` folder or a hub name instead of JSONL (`data/sources.py`); `promptcot export` writes
a run's problems, pairs and SFT rows in TRL's conversational layouts, which TRL's trainers read as they are."""

import math

import datasets
import pytest

from promptcot_pl.data.jsonl import JsonlError, write_jsonl
from promptcot_pl.data.records import Pair, Problem, Trace
from promptcot_pl.domains import build_domain
from promptcot_pl.experiment import load_config
from promptcot_pl.runner.context import StageContext


def _seed_triples(tmp_path, path):
    from promptcot_pl.stages.seed.loop import load_triples

    cfg = load_config(None, ["domain.source=triples", f"domain.path={path}", "domain.n_items=1000"])
    return load_triples(StageContext(cfg=cfg, run_dir=tmp_path, stage_dir=tmp_path / "seed", tracker=None,
                                     run_id=None))


def test_a_seed_corpus_as_a_parquet_dataset_gives_the_same_triples_as_jsonl(math_triples, tmp_path):
    triples = list(math_triples[:20]) + build_domain("code", 6, seed=0)  # answers and unit tests (nested rows)
    rows = [t.to_dict() for t in triples]
    write_jsonl(tmp_path / "seed.jsonl", rows)
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "seed.parquet"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))

    from_jsonl = _seed_triples(tmp_path, tmp_path / "seed.jsonl")
    assert from_jsonl == triples
    assert _seed_triples(tmp_path, tmp_path / "seed.parquet") == from_jsonl
    assert _seed_triples(tmp_path, tmp_path / "saved") == from_jsonl


def test_a_bad_dataset_row_is_named_and_an_unreadable_source_is_refused_at_check(math_triples, tmp_path):
    rows = [t.to_dict() for t in math_triples[:3]]
    del rows[2]["problem"]
    datasets.Dataset.from_list(rows[2:]).to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(JsonlError, match=r"bad\.parquet row 0: .*problem"):
        _seed_triples(tmp_path, tmp_path / "bad.parquet")
    from promptcot_pl.config import ConfigError

    with pytest.raises(ConfigError, match=r"key 'evaluate.sets\[0\]': .*missing.parquet: no such file"):
        load_config(None, ["stages=[evaluate]", f"evaluate.sets=[{tmp_path / 'missing.parquet'}]"])


def _finished_run(tmp_path, tiny_dir) -> tuple:
    """A run directory holding what synth, self-play and SFT write, rendered with the tiny model's template."""
    from promptcot_pl.config import RoleFormat
    from promptcot_pl.data.formats import PromptFormat
    from promptcot_pl.models import load_tokenizer

    run = tmp_path / "run"
    (run / "synth").mkdir(parents=True)
    (run / "config.yaml").write_text("prompts:\n  solver:\n    wording: ours\n")
    (run / "synth" / "DONE").write_text("{}")
    problems = [Problem(id=f"p{i}", domain="math", problem=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(8)]
    write_jsonl(run / "synth" / "problems.jsonl", problems)
    fmt = PromptFormat("solver", RoleFormat("chat"), load_tokenizer(tiny_dir))
    pairs = [Pair(problem_id=p.id, prompt=fmt.prompt("math", problem=p.problem),
                  chosen=f"{p.problem} The answer is $\\boxed{{{p.answer}}}$.", rejected="The answer is $\\boxed{0}$.")
             for p in problems]
    write_jsonl(run / "selfplay" / "round_001" / "pairs.jsonl", pairs)
    (run / "selfplay" / "round_001" / "DONE").write_text("{}")
    write_jsonl(run / "selfplay" / "round_002" / "pairs.jsonl", pairs[:3])  # an unfinished round: left out
    traces = [Trace(problem_id=p.id, prompt=fmt.message("math", problem=p.problem), completion=pair.chosen)
              for p, pair in zip(problems, pairs)]
    write_jsonl(run / "sft" / "synth" / "traces.jsonl", traces)
    return run, problems, fmt


def test_exported_pairs_load_with_datasets_and_train_trls_dpo_trainer_for_one_step(tiny_dir, tmp_path, capsys):
    from trl import DPOConfig, DPOTrainer

    from promptcot_pl.cli import main
    from promptcot_pl.data.released import read_eval_rows
    from promptcot_pl.models import load_model, load_tokenizer

    run, problems, fmt = _finished_run(tmp_path, tiny_dir)
    assert main(["export", str(run), str(tmp_path / "out")]) == 0
    assert f"{tmp_path / 'out' / 'pairs'}: 8 rows" in capsys.readouterr().out

    pairs = datasets.load_from_disk(str(tmp_path / "out" / "pairs"))
    assert pairs[0]["prompt"] == [{"role": "user", "content": fmt.message("math", problem=problems[0].problem)}]
    assert pairs[0]["chosen"][0]["role"] == "assistant" and pairs[0]["round"] == 1
    args = DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, max_steps=1, use_cpu=True,
                     report_to="none", save_strategy="no", disable_tqdm=True, bf16=False, logging_steps=1)
    trainer = DPOTrainer(model=load_model(tiny_dir), args=args, train_dataset=pairs,
                         processing_class=load_tokenizer(tiny_dir))
    trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(trainer.state.log_history[0]["loss"])

    # the problems read back as an evaluation set (or a corpus to annotate); the SFT rows as conversations
    back = read_eval_rows(tmp_path / "out" / "problems")
    assert [(p.problem, p.answer) for p in back] == [(p.problem, p.answer) for p in problems]
    sft = datasets.load_from_disk(str(tmp_path / "out" / "sft" / "synth"))
    assert [turn["role"] for turn in sft[0]["messages"]] == ["user", "assistant"]


def test_hub_names_with_dots_pass_the_check_and_a_mistyped_local_path_does_not(tmp_path):
    from promptcot_pl.data.sources import source_problem, source_stem

    assert source_problem("xl-zhao/PromptCoT-2.0-Concepts") is None  # read by its stage, where the hub is reachable
    assert source_stem("AI-MO/NuminaMath-1.5:test") == "NuminaMath-1.5"
    (tmp_path / "data").mkdir()
    assert "no such file or dataset folder" in source_problem(f"{tmp_path}/data/aime24")
    assert "no such file or dataset folder" in source_problem("aime24.parquet")


def test_null_columns_read_as_absent_fields(math_triples, tmp_path):
    """A dataset column holds null where a JSONL row leaves the field out: the record's default applies."""
    from promptcot_pl.data.released import read_eval_rows

    rows = [{"problem": "What is 1 + 1?", "answer": "2", "id": None, "source": None},
            {"problem": "What is 2 + 2?", "answer": "4", "id": None, "source": None}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "eval.parquet"))
    problems = read_eval_rows(tmp_path / "eval.parquet")
    assert [p.id for p in problems] == ["eval-1", "eval-2"] and {p.source for p in problems} == {"eval"}
