"""Teacher traces for problems (SPEC §6) and their filters, with a count for every drop.

A trace's `prompt` is the student's solver message (words, no template: each model renders it in its own
format), its `completion` the teacher's answer. The teacher is an engine (any HF model path, or vLLM) sampled once
per prompt by default, or — for the built-in
math domain — the domain's reference solver (`domains/math_oracle.py`), which writes a worked solution for every
statement in a family's wording. Filters, in order:
- duplicate prompts are removed before any teacher call ("duplicate_prompt");
- the oracle does not recognise the statement ("oracle_unsolved");
- a trace without a final `\\boxed{}` answer (math) or final code block (code), cut by the token limit, or with a
  broken think block is dropped (`verify/format.py`: "no_boxed_answer", "no_code", "truncated", …);
- optionally (`filter_correct`, off by default as in the paper) a trace whose answer is not equivalent to the
  problem's reference answer is dropped ("incorrect"; unscorable checks: "unscorable").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.formats import PromptFormat, release_layout
from promptcot_pl.data.records import Problem, Trace
from promptcot_pl.distributed import sharded_map
from promptcot_pl.domains.math_oracle import solve
from promptcot_pl.verify.format import invalid_reason
from promptcot_pl.verify.rewards import Rewards


def unique_prompts(problems: Sequence[Problem], dropped: Counter) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        key = " ".join(p.problem.split())
        if key in seen:
            dropped["duplicate_prompt"] += 1
            continue
        seen.add(key)
        out.append(p)
    return out


def _message(fmt: PromptFormat, problem: Problem) -> str:
    return fmt.message(problem.domain, problem=problem.problem.strip())


def oracle_traces(problems: Sequence[Problem], student: PromptFormat, dropped: Counter) -> list[Trace]:
    """Traces of the domain's reference solver; `prompt` is the student's solver message (words, no template)."""
    traces = []
    for p in problems:
        solved = solve(p.problem) if p.domain == "math" else None
        if solved is None:
            dropped["oracle_unsolved"] += 1
            continue
        solution, answer = solved
        traces.append(Trace(problem_id=p.id, prompt=_message(student, p), completion=solution,
                            meta={"teacher": "oracle", "answer": answer, "source": p.source}))
    return traces


def engine_traces(engine, teacher_fmt: PromptFormat, student: PromptFormat, problems: Sequence[Problem],
                  sampling: SamplingConfig, teacher: str, dropped: Counter) -> list[Trace]:
    """`sampling.n` traces per problem from a teacher prompted in its own format; format-invalid ones dropped and
    counted. A thinking teacher's traces are written in the release layout (`<think>\n…</think>` + answer)."""
    traces = []
    prompts = [teacher_fmt.prompt(p.domain, problem=p.problem.strip()) for p in problems]
    for problem, group in zip(problems, engine.generate(prompts, sampling)):
        for i, completion in enumerate(group):
            why = invalid_reason(completion.text, problem.domain, truncated=completion.finish_reason == "length",
                                 thinking=teacher_fmt.thinking)
            if why:
                dropped[why] += 1
                continue
            text = completion.text.strip()
            if teacher_fmt.thinking and not text.startswith("<think>"):
                text = "<think>\n" + completion.text.lstrip(" ").rstrip()  # the template had opened it
            traces.append(Trace(problem_id=problem.id, prompt=_message(student, problem), completion=text,
                                meta={"teacher": teacher, "sample": i, "tokens": completion.n_tokens,
                                      "source": problem.source}))
    return traces


def keep_correct(traces: Sequence[Trace], problems: Sequence[Problem], dropped: Counter,
                 rewards: Rewards | None = None) -> list[Trace]:
    """Traces whose answer matches the problem's reference; traces of problems without one are kept."""
    by_id = {p.id: p for p in problems}
    checkable = [t for t in traces if by_id[t.problem_id].answer or by_id[t.problem_id].tests]
    # sharded over the ranks of a multi-process run
    scorer = rewards or Rewards()
    scores = sharded_map(lambda part: scorer.score([t.completion for t in part], [by_id[t.problem_id] for t in part],
                                                   thinking=any("</think>" in t.completion for t in part)),
                         checkable)
    reward_of = dict(zip(map(id, checkable), scores))
    kept = []
    for t in traces:
        reward = reward_of.get(id(t), 1.0)
        if reward is None:
            dropped["unscorable"] += 1
        elif reward < 1.0:
            dropped["incorrect"] += 1
        else:
            kept.append(t)
    return kept


def fit_pair(student: PromptFormat, trace: Trace) -> tuple[str, str]:
    """(prompt, target) the student is fitted on: its own rendering of the message, the trace after it."""
    return student.render(trace.prompt), student.completion_target(trace.completion)


def released_format(traces: Sequence[Trace], student: PromptFormat) -> list[dict[str, str]]:
    """The release's SFT rows {"prompt", "completion"} (SFT-4.8M): the student's rendered prompt up to the
    assistant header; the completion from its newline on (`\n<think>\n…\n</think>\n\n` + answer for thinking
    traces)."""
    rows = []
    for t in traces:
        prompt, target = fit_pair(student, t)
        prompt, completion = release_layout(prompt, target, student.opens_think, t.completion.startswith("<think>"))
        rows.append({"prompt": prompt, "completion": completion})
    return rows
