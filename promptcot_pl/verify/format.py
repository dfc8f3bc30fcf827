"""Format validity of a policy rollout (SPEC §5: "drop invalid rollouts — broken think/answer format, empty answer
or code"), separate from its reward: a valid rollout may be wrong, and an invalid one never enters a pair.

- think blocks: when a rollout uses `<think>`/`</think>` at all, it must hold exactly one well-formed block at
  its start, followed by a non-empty answer. A thinking model (`thinking=True`: Qwen3-Thinking, QwQ) may start
  inside the block its chat template opened, so `…</think>answer` is well-formed too, and its answer — the only
  part that is graded (`final_text`) — is the text after the first `</think>`;
- math: the answer part must end in a non-empty `\\boxed{...}` (a fallback phrase such as "the answer is 3" is
  gradeable by the reward but is not the trained format);
- code: the answer part must contain a non-empty fenced code block;
- a rollout cut by the token limit is invalid (its ending is not the policy's choice).
"""

from __future__ import annotations

import re

from promptcot_pl.verify.code import extract_code
from promptcot_pl.verify.math import extract_answer, has_box

_THINK = re.compile(r"\s*<think>(.*?)</think>(.*)", re.DOTALL)


def final_text(text: str, thinking: bool = False) -> str | None:
    """The part of a completion that is graded: the text after the first `</think>` for a thinking model or any
    completion that uses a think block (None when the thoughts never close), else the whole text. An answer
    inside the thoughts is never graded (a reward canary checks this)."""
    if not thinking and "<think>" not in text and "</think>" not in text:
        return text
    head, sep, tail = text.partition("</think>")
    return tail if sep else None


def invalid_reason(text: str, domain: str, truncated: bool = False, thinking: bool = False) -> str | None:
    """Why the rollout is not in the trained format, or None when it is."""
    if truncated:
        return "truncated"
    answer = text
    if thinking and "<think>" not in text:
        text = "<think>" + text  # the template opened the block
    if thinking or "<think>" in text or "</think>" in text:
        match = _THINK.fullmatch(text)
        if match is None or text.count("<think>") != 1 or text.count("</think>") != 1:
            return "broken_think"
        answer = match.group(2)
    if not answer.strip():
        return "empty"
    match domain:
        case "math":
            if not has_box(answer) or extract_answer(answer) is None:  # the box forms extraction reads
                return "no_boxed_answer"
        case "code":
            if extract_code(answer) is None:
                return "no_code"
        case _:
            raise ValueError(f"no format check for domain {domain!r}; domains are 'math' and 'code'")
    return None
