"""PromptCoT preference pairs from scored rollouts (SPEC §5), a pure function of the rollout table.

Per problem: the pass rate is the mean reward over its scorable rollouts (reward None — the checker could not
decide — is counted and left out, never scored 0; a rollout in a broken format still counts with its reward: a
missing answer is a failure of the policy). A problem with fewer than `min_scored` scorable rollouts gets no rate
("too_few_scored": 1 pass + 1 fail + 6 undecidable is no evidence of a rate of 1/2). Problems whose pass rate lies in the window are kept (default
(0, 1/2]: the release keeps exactly 1/2, the paper's text says "< 1/2"). Invalid rollouts never enter a pair;
chosen = a valid passing rollout, rejected = a valid failing one, min(#pass, #fail) pairs per problem, each
rollout used at most once, drawn in a seeded order.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from promptcot_pl.data.formats import PromptFormat, release_layout
from promptcot_pl.data.prompts import solver_prompt
from promptcot_pl.data.records import Pair, Problem, Rollout


@dataclass(frozen=True)
class PassWindow:
    low: float = 0.0
    high: float = 0.5
    low_inclusive: bool = False
    high_inclusive: bool = True

    def __contains__(self, rate: float) -> bool:
        above = rate >= self.low if self.low_inclusive else rate > self.low
        below = rate <= self.high if self.high_inclusive else rate < self.high
        return above and below

    def __str__(self) -> str:
        return f"{'[' if self.low_inclusive else '('}{self.low:g}, {self.high:g}{']' if self.high_inclusive else ')'}"


@dataclass
class ProblemOutcome:
    problem_id: str
    rollouts: int
    unscorable: int
    invalid: int
    passed: int
    pass_rate: float | None  # None: no scorable rollout
    pairs: int
    status: str  # kept | below_window | above_window | unscorable | too_few_scored | no_valid_pair


def build_pairs(problems: Sequence[Problem], rollouts: Sequence[Rollout], window: PassWindow, fmt: PromptFormat,
                seed: int = 0, min_scored: int = 1) -> tuple[list[Pair], list[ProblemOutcome]]:
    """Pairs whose `prompt` is the rendered prompt the policy answered (`fmt`, its solver format) and whose
    chosen/rejected are its completions as generated."""
    by_problem: dict[str, list[Rollout]] = defaultdict(list)
    for r in rollouts:
        by_problem[r.problem_id].append(r)
    pairs: list[Pair] = []
    outcomes: list[ProblemOutcome] = []
    for problem in problems:
        group = sorted(by_problem.get(problem.id, []), key=lambda r: r.index)
        scored = [r for r in group if r.reward is not None]
        passed = sum(r.reward == 1.0 for r in scored)
        rate = passed / len(scored) if scored else None
        chosen = [r for r in scored if r.valid and r.reward == 1.0]
        rejected = [r for r in scored if r.valid and r.reward == 0.0]
        n_pairs = 0
        if rate is None:
            status = "unscorable"
        elif len(scored) < min_scored:
            status, rate = "too_few_scored", None
        elif rate not in window:
            status = "below_window" if rate <= window.low else "above_window"
        else:
            rng = random.Random(f"{seed}/{problem.id}")
            rng.shuffle(chosen)
            rng.shuffle(rejected)
            n_pairs = min(len(chosen), len(rejected))
            status = "kept" if n_pairs else "no_valid_pair"
            prompt = solver_prompt(fmt, problem.problem, problem.domain)
            for c, r in zip(chosen[:n_pairs], rejected[:n_pairs]):
                pairs.append(Pair(problem_id=problem.id, prompt=prompt, chosen=c.text, rejected=r.text,
                                  meta={"pass_rate": rate, "chosen_index": c.index, "rejected_index": r.index,
                                        "rollouts": len(group), "source": problem.source,
                                        "domain": problem.domain}))
        outcomes.append(ProblemOutcome(problem.id, len(group), len(group) - len(scored),
                                       sum(not r.valid for r in group), passed, rate, n_pairs, status))
    return pairs, outcomes


def summarize(outcomes: Sequence[ProblemOutcome]) -> dict[str, int]:
    """Problem counts by status plus rollout totals, for logs and MLflow."""
    counts = Counter(o.status for o in outcomes)
    return {"problems": len(outcomes), **{f"problems_{k}": v for k, v in sorted(counts.items())},
            "rollouts": sum(o.rollouts for o in outcomes), "rollouts_unscorable": sum(o.unscorable for o in outcomes),
            "rollouts_invalid": sum(o.invalid for o in outcomes), "pairs": sum(o.pairs for o in outcomes)}


def release_source(source: str, domain: str) -> str:
    """The release's `source` names: PromptCoT-Math / -Code for synthesized prompts, OpenSource-… for the rest."""
    return f"{'PromptCoT' if source == 'synth' else 'OpenSource'}-{domain.capitalize()}"


def released_format(pairs: Sequence[Pair], fmt: PromptFormat) -> list[dict[str, str]]:
    """The release's pair rows `{"source", "prompt", "chosen", "rejected"}` (SelfPlay-30B-11K; TRL and OpenRLHF read
    the same fields): the prompt ends at the assistant header, completions start with its newline (and `<think>\n`
    for a thinking policy)."""
    rows = []
    for p in pairs:
        prompt, chosen = release_layout(p.prompt, p.chosen, fmt.opens_think, fmt.thinking)
        _, rejected = release_layout(p.prompt, p.rejected, fmt.opens_think, fmt.thinking)
        rows.append({"source": release_source(p.meta.get("source", "synth"), p.meta.get("domain", "math")),
                     "prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows
