"""Policy rollouts on problems through the engine, each checked for format (`verify/format.py`) and scored with
the verifiable rewards (`verify/rewards.py`). (Accuracy on held-out problems is `analysis.difficulty`'s pass
rate.)"""

from __future__ import annotations

from collections.abc import Sequence

from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.prompts import solver_prompt
from promptcot_pl.data.records import Problem, Rollout
from promptcot_pl.distributed import sharded_map
from promptcot_pl.generation.engine import Completion
from promptcot_pl.verify.format import invalid_reason
from promptcot_pl.verify.rewards import Rewards


def judge(fmt: PromptFormat, problems: Sequence[Problem], groups: Sequence[Sequence[Completion]],
          rewards: Rewards) -> list[list[tuple[float | None, bool]]]:
    """(reward, a program's test timed out) of every completion of every problem's group. Verification is
    sharded over the ranks of a multi-process run (sandboxes and sympy are the slow part)."""
    flat = [(c.text, p) for p, group in zip(problems, groups) for c in group]
    judged = sharded_map(lambda part: rewards.judge([text for text, _ in part], [p for _, p in part], fmt.thinking),
                         flat)
    out, start = [], 0
    for group in groups:
        out.append(list(judged[start: start + len(group)]))
        start += len(group)
    return out


def rollouts(engine, fmt: PromptFormat, problems: Sequence[Problem], sampling: SamplingConfig,
             rewards: Rewards | None = None) -> list[Rollout]:
    """`sampling.n` rollouts per problem, in problem order, prompted in the policy's format `fmt`; `valid` and
    `reward` filled in (a thinking policy is graded on the text after its `</think>`); `meta["timeout"]` says a
    program's test ran past `verify.code_timeout_s`."""
    rewards = rewards or Rewards()
    groups = engine.generate([solver_prompt(fmt, p.problem, p.domain) for p in problems], sampling)
    out = []
    for problem, group, judged in zip(problems, groups, judge(fmt, problems, groups, rewards)):
        for index, (completion, (reward, timed_out)) in enumerate(zip(group, judged)):
            reason = invalid_reason(completion.text, problem.domain, truncated=completion.finish_reason == "length",
                                    thinking=fmt.thinking)
            out.append(Rollout(problem_id=problem.id, index=index, text=completion.text, valid=reason is None,
                               reward=reward, meta={"invalid": reason, "tokens": completion.n_tokens,
                                                    "timeout": timed_out}))
    return out
