"""Verifiable targets for synthesized problems (SPEC §4–5).

- math: the reference answer is the majority vote over n samples of a reference engine (`verify.math
  .majority_vote`, which clusters equivalent answers such as `1/2` and `0.5`); the winning share is kept as the
  confidence and problems below `min_confidence` are dropped ("low_confidence"; "no_answer" when no sample had one).
- code: a test-writer engine is prompted once per test (`stages/synth/test_writer.py`); broken outputs are dropped with
  their reason and identical tests merged (the paper's filter; a synthesized problem has no reference solution
  to check a test against). Problems left with no test are dropped ("no_tests").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.prompts import solver_prompt
from promptcot_pl.stages.synth.test_writer import parse_test, test_writer_prompt
from promptcot_pl.verify.format import final_text
from promptcot_pl.verify.math import extract_answer, majority_vote


def majority_references(engine, fmt: PromptFormat, problems: Sequence[str], sampling: SamplingConfig,
                        min_confidence: float) -> tuple[list[tuple[str, float] | None], Counter]:
    """Per problem (answer, confidence) or None (dropped), and the drop reasons. `fmt`: the voter's solver format
    (a thinking voter's answer is read after its `</think>`)."""
    prompts = [solver_prompt(fmt, p, "math") for p in problems]
    out: list[tuple[str, float] | None] = []
    dropped: Counter = Counter()
    for group in engine.generate(prompts, sampling):
        answer, share = majority_vote([extract_answer(final_text(c.text, fmt.thinking) or "") for c in group])
        if answer is None:
            dropped["no_answer"] += 1
            out.append(None)
        elif share < min_confidence:
            dropped["low_confidence"] += 1
            out.append(None)
        else:
            out.append((answer, share))
    return out, dropped


def written_tests(engine, fmt: PromptFormat, problems: Sequence[str], sampling: SamplingConfig,
                  ) -> tuple[list[list[dict[str, str]]], Counter]:
    """Per problem its kept tests ([] when none survived), and the reasons tests or problems were dropped.
    `sampling.n` is the number of test-writer calls per problem."""
    kept: list[list[dict[str, str]]] = []
    reasons: Counter = Counter()
    for i, group in enumerate(engine.generate([test_writer_prompt(fmt, p) for p in problems], sampling)):
        tests: list[dict[str, str]] = []
        for completion in group:
            test, why = parse_test(completion.text)
            if test is None:
                reasons[str(why)] += 1
            elif test in tests:
                reasons["duplicate_test"] += 1
            else:
                tests.append(test)
        if not tests:
            reasons["no_tests"] += 1
        kept.append(tests)
    return kept, reasons
