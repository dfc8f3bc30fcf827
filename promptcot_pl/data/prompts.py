"""The conditionals as (prompt, target) text, and parsing of the prompt model's marked output.

- prompt model p_θ:     c      → (z, x)   target = rationale and problem between the release's markers
- rationale model q_φ:  (c, x) → z
- solver:               x      → solution

Each function takes the role's `PromptFormat` (`data/formats.py`: wording and raw/chat rendering) and returns
`(prompt, target)`; the loss is taken on target tokens only (see `collate.py`). The concept rendering follows the
released PromptCoT prompts ("Foundational Concepts:" as a numbered list, then "Difficulty Level:"), so
`parse_concepts` reads both ours and theirs.
"""

from __future__ import annotations

import re

from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.records import Triple

RATIONALE_BEGIN = "<!-- BEGIN RATIONALE -->"
RATIONALE_END = "<!-- END RATIONALE -->"
PROBLEM_BEGIN = "<!-- BEGIN PROBLEM -->"
PROBLEM_END = "<!-- END PROBLEM -->"
MARKERS = (RATIONALE_BEGIN, RATIONALE_END, PROBLEM_BEGIN, PROBLEM_END)

_MARKED = re.compile(
    re.escape(RATIONALE_BEGIN) + r"(?P<z>.*?)" + re.escape(RATIONALE_END) + r".*?"
    + re.escape(PROBLEM_BEGIN) + r"(?P<x>.*?)" + re.escape(PROBLEM_END),
    re.DOTALL,
)


def render_concepts(concepts: list[str], level: str, heading: str = "Foundational Concepts:") -> str:
    lines = [heading]
    lines += [f"{i}. {concept}" for i, concept in enumerate(concepts, start=1)]
    lines += ["", f"Difficulty Level: {level}"]
    return "\n".join(lines)


def _concepts(fmt: PromptFormat, concepts: list[str], level: str, domain: str) -> str:
    code = domain == "code" and fmt.cfg.wording == "release"  # the release's code prompt names them so
    return render_concepts(concepts, level, "Foundational Programming Concepts:" if code else "Foundational Concepts:")


def parse_concepts(text: str) -> tuple[list[str], str | None]:
    """Concepts (numbered or bulleted lines after a 'Concepts' header) and level from a rendered prompt."""
    concepts: list[str] = []
    level = None
    in_list = False
    for line in text.splitlines():
        stripped = line.strip()
        if re.match(r"(?i)^(foundational\s+)?(programming\s+)?concepts\s*:", stripped):
            in_list = True
            continue
        match = re.match(r"(?i)^difficulty\s+level\s*:\s*(.+)$", stripped)
        if match:
            level = match.group(1).strip()
            in_list = False
            continue
        item = re.match(r"^(?:\d+[.)]|[-*•])\s+(.+)$", stripped)
        if in_list and item:
            concepts.append(item.group(1).strip())
    return concepts, level


def prompt_model_prompt(fmt: PromptFormat, concepts: list[str], level: str, domain: str = "math") -> str:
    """What p_θ continues from for concept set c."""
    return fmt.prompt(domain, concepts=_concepts(fmt, concepts, level, domain))


def prompt_model_example(fmt: PromptFormat, concepts: list[str], level: str, rationale: str, problem: str,
                         domain: str = "math") -> tuple[str, str]:
    """c → (z, x): the prompt model's conditional, with the release's markers."""
    return prompt_model_prompt(fmt, concepts, level, domain), render_marked(rationale, problem)


def problem_given_rationale_example(fmt: PromptFormat, concepts: list[str], level: str, rationale: str | None,
                                    problem: str, domain: str = "math") -> tuple[str, str]:
    """x given (c, z) — the problem block alone as target, the rationale block (or nothing, for the no-rationale
    baseline) in the prompt. Both variants score the very same target text, so their NLLs of x compare."""
    prompt = prompt_model_prompt(fmt, concepts, level, domain)
    if rationale is not None:
        prompt += f"{RATIONALE_BEGIN}\n{rationale.strip()}\n{RATIONALE_END}\n"
    return f"{prompt}{PROBLEM_BEGIN}\n", f"{problem.strip()}\n{PROBLEM_END}"


def render_marked(rationale: str, problem: str) -> str:
    return f"{RATIONALE_BEGIN}\n{rationale.strip()}\n{RATIONALE_END}\n{PROBLEM_BEGIN}\n{problem.strip()}\n{PROBLEM_END}"


def parse_marked(text: str) -> tuple[str, str] | None:
    """(rationale, problem) from a prompt-model output, or None when either block is missing or empty."""
    match = _MARKED.search(text)
    if match is None:
        return None
    rationale, problem = match.group("z").strip(), match.group("x").strip()
    return (rationale, problem) if rationale and problem else None


def rationale_model_example(fmt: PromptFormat, concepts: list[str], level: str, problem: str, rationale: str,
                            domain: str = "math") -> tuple[str, str]:
    """(c, x) → z: the rationale model's conditional."""
    return (fmt.prompt(domain, concepts=_concepts(fmt, concepts, level, domain), problem=problem.strip()),
            rationale.strip())


def solver_prompt(fmt: PromptFormat, problem: str, domain: str = "math") -> str:
    """How policies, references, teachers and evaluated models are asked a problem."""
    return fmt.prompt(domain, problem=problem.strip())


def solver_example(fmt: PromptFormat, problem: str, solution: str, domain: str = "math") -> tuple[str, str]:
    """x → solution."""
    return solver_prompt(fmt, problem, domain), fmt.completion_target(solution.strip())


# Whole training sets of (prompt, target) pairs, one per conditional

def prompt_pairs(fmt: PromptFormat, triples: list[Triple]) -> list[tuple[str, str]]:
    return [prompt_model_example(fmt, t.concepts, t.level, t.rationale, t.problem, t.domain) for t in triples]


def rationale_pairs(fmt: PromptFormat, triples: list[Triple]) -> list[tuple[str, str]]:
    return [rationale_model_example(fmt, t.concepts, t.level, t.problem, t.rationale, t.domain) for t in triples]


def solver_pairs(fmt: PromptFormat, triples: list[Triple]) -> list[tuple[str, str]]:
    return [solver_example(fmt, t.problem, t.solution, t.domain) for t in triples if t.solution]
