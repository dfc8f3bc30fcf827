"""`promptcot export RUN_DIR OUT_DIR`: a finished run's data as Hugging Face `datasets` datasets on disk, in the
layouts TRL's trainers read (`datasets.load_from_disk(OUT_DIR/<name>)` reads each back):

- `problems/`: the synthesized problems (stage `synth`), prompt-only conversational — `prompt` (the user turn
  the solver is asked with) plus `problem`, `answer`, `tests`, `id`, `domain`, `level`, `concepts`, `source`
  (GRPOTrainer passes the extra columns to reward functions; `evaluate.sets` and `annotate.corpus` read it too);
- `pairs/`: self-play's preference pairs of every finished round, conversational preference — `prompt`, `chosen`,
  `rejected` (DPOTrainer) plus `problem_id` and `round`;
- `sft/<source>/`: the SFT traces of each source, conversational — `messages` (user, assistant) plus
  `problem_id`.

`datasets` writes the arrow files; what a run did not make (no self-play, no SFT) is left out and said.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptcot_pl.data.formats import user_message, words
from promptcot_pl.data.jsonl import read_jsonl
from promptcot_pl.data.records import Pair, Problem, Trace


def _turn(role: str, content: str) -> list[dict[str, str]]:
    return [{"role": role, "content": content}]


def problem_rows(problems: list[Problem], wording: str, system: list[dict[str, str]]) -> list[dict[str, Any]]:
    """TRL's prompt-only conversational rows of `problems`, asked in the solver's `wording` after its `system`
    turn (none or one)."""
    return [{"prompt": system + _turn("user", words("solver", wording, p.domain, problem=p.problem)),
             "problem": p.problem,
             "answer": p.answer, "tests": [dict(t) for t in p.tests] if p.tests else None, "id": p.id,
             "domain": p.domain, "level": p.level, "concepts": list(p.concepts), "source": p.source}
            for p in problems]


def pair_rows(pairs: list[Pair], round_index: int, system: list[dict[str, str]]) -> list[dict[str, Any]]:
    """TRL's conversational preference rows: the solver's `system` turn and the prompt's user turn (the chat
    template is the trainer's to apply), each completion an assistant turn."""
    return [{"prompt": system + _turn("user", user_message(p.prompt)), "chosen": _turn("assistant", p.chosen),
             "rejected": _turn("assistant", p.rejected), "problem_id": p.problem_id, "round": round_index}
            for p in pairs]


def trace_rows(traces: list[Trace], system: list[dict[str, str]]) -> list[dict[str, Any]]:
    """TRL's conversational SFT rows."""
    return [{"messages": system + _turn("user", t.prompt) + _turn("assistant", t.completion),
             "problem_id": t.problem_id}
            for t in traces]


def export_run(run_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Write the run's datasets under `out_dir`; returns rows written per dataset."""
    import datasets
    from omegaconf import OmegaConf

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.yaml)")
    config = OmegaConf.load(run_dir / "config.yaml")
    wording = OmegaConf.select(config, "prompts.solver.wording", default="ours")
    system_text = OmegaConf.select(config, "prompts.solver.system", default=None)
    system = _turn("system", system_text) if system_text else []
    tables: dict[str, list[dict[str, Any]]] = {}
    if (run_dir / "synth" / "DONE").is_file():
        tables["problems"] = problem_rows(read_jsonl(run_dir / "synth" / "problems.jsonl", Problem), wording, system)
    # finished rounds only (an interrupted round's pairs are rewritten when it reruns)
    rounds = sorted(path for path in (run_dir / "selfplay").glob("round_*/pairs.jsonl")
                    if (path.parent / "DONE").is_file())
    if rounds:
        tables["pairs"] = [row for path in rounds
                           for row in pair_rows(read_jsonl(path, Pair), int(path.parent.name.split("_")[1]), system)]
    for path in sorted((run_dir / "sft").glob("*/traces.jsonl")):
        tables[f"sft/{path.parent.name}"] = trace_rows(read_jsonl(path, Trace), system)
    if not tables:
        raise FileNotFoundError(f"{run_dir}: nothing to export (no finished synth, self-play pairs or SFT traces)")
    for name, rows in tables.items():
        datasets.Dataset.from_list(rows).save_to_disk(str(out_dir / name))
    return {name: len(rows) for name, rows in tables.items()}
