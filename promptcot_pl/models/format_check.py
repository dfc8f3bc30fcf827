"""`promptcot check` and every run start: each role's prompt format fits the model it is used with.

A `chat` role needs a tokenizer with a chat template; the model of each role comes from the config (p_θ from
`model.path`, q_φ from `model.rationale_path`, the solver/policy/evaluated model from `solver.path`, the teacher
from `sft.teacher`, the test writer from `synth.test_writer`, the annotators from `annotate.annotators`).
The offline tiny model always has one (ChatML, Llama-3 or [INST], `models/tokenizer_styles.py`). A model that
cannot be loaded offline here (a hub name not in the local cache) is reported as not checked; it is checked
again when the stage loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotation only: the experiment config sits above this floor (docs/architecture.md)
    from promptcot_pl.experiment import ExperimentConfig


BUILT = ("tiny", "oracle", "solver")  # built by the project, or resolved to one of the others


def role_models(cfg: ExperimentConfig) -> dict[str, list[tuple[str, str]]]:
    """Role → [(model path or name, the config key that names it)]."""
    solver = [(cfg.solver.path, "solver.path")]
    models = {
        "prompt_model": [(cfg.model.path, "model.path")],
        "rationale_model": [(cfg.model.rationale_path or cfg.model.path,
                             "model.rationale_path" if cfg.model.rationale_path else "model.path")],
        "solver": solver,
        "teacher": [(cfg.sft.teacher, "sft.teacher")] if "sft" in cfg.stages else [],
        "test_writer": ([(cfg.synth.test_writer, "synth.test_writer")] if cfg.synth.test_writer else solver)
        if cfg.domain.name == "code" and "synth" in cfg.stages else [],
        "annotator": [(a, "annotate.annotators") for a in cfg.annotate.annotators] if "annotate" in cfg.stages else [],
    }
    if cfg.sft.student not in ("solver", "tiny") and "sft" in cfg.stages:
        models["solver"] = models["solver"] + [(cfg.sft.student, "sft.student")]
    if cfg.evaluate.model not in ("solver", "selfplay", "sft") and "evaluate" in cfg.stages:
        models["solver"] = models["solver"] + [(cfg.evaluate.model, "evaluate.model")]
    return models


def check_formats(cfg: ExperimentConfig) -> list[str]:
    """Raise ValueError naming `prompts.<role>.style` and the model key when a chat role's tokenizer has no chat
    template; return notes on models that could not be checked offline."""
    from transformers import AutoTokenizer

    notes = []
    for role, models in role_models(cfg).items():
        if getattr(cfg.prompts, role).style != "chat":
            continue
        for path, key in models:
            if path in BUILT:
                continue
            try:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            except (OSError, ValueError):
                notes.append(f"{key}={path}: not available offline here; prompts.{role}.style=chat not checked")
                continue
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError(f"key 'prompts.{role}.style': 'chat', but the tokenizer of {key}={path} has no chat "
                                 f"template; set prompts.{role}.style=raw")
    return notes
