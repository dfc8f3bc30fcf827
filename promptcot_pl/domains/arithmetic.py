"""The built-in arithmetic world: multi-step word problems that the project's tiny models can learn to solve.

The `math` domain is a stand-in for competition problems that a 0.7M-parameter model cannot solve (its solutions
skip the arithmetic), so nothing measured on it rises above the noise. Here every problem is a chain of column
operations on whole numbers — "Mia has 47 stickers. She finds 38 more. Then she gives away 19. How many does she
have now?" — and the worked solution spells out every column the way small transformers learn arithmetic
(a scratchpad: one digit fact per line part, carries and borrows written down; RELEASE_FORMATS §6). With a
tokenizer that keeps digits apart (`model.tiny.split_digits`), each step is a one-digit fact plus copying, which
a tiny model learns in minutes, and the chance of a slip grows with the number of steps: levels are real
difficulty (more operations, larger numbers, multiplication).

- Level 1: one addition or subtraction of two-digit numbers.
- Level 2: two operations (addition, subtraction) on two-digit numbers.
- Level 3: three operations on two-digit numbers, one of them a multiplication by a one-digit number (the running
  total then has three or four digits).

The rationale fixes everything the problem is built from (who, what, the start, each operation, each running
total), so NLL(x | c, z) lies far below NLL(x | c). `parse_problem` reads a statement back (synthesized ones
too), `solve` writes its worked solution, `structure` reports the steps and level the statement actually realises
(the world's oracle, for the analyses). Triples carry domain "math": answers are checked like any math answer.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from promptcot_pl.data.records import Triple
from promptcot_pl.domains.distinct import draw_distinct, item_id

LEVELS = ("Level 1", "Level 2", "Level 3")
NAMES = {"Mia": "she", "Leo": "he", "Ava": "she", "Sam": "he", "Zoe": "she", "Max": "he", "Ivy": "she",
         "Ben": "he", "Eva": "she", "Tom": "he", "Amy": "she", "Jon": "he"}
ITEMS = ("stickers", "marbles", "coins", "stamps", "shells", "cards", "beads", "pencils", "books", "apples",
         "cookies", "buttons")
# how each operation reads in a statement; every phrase holds exactly one number
PHRASES = {
    "+": ("finds {n} more", "buys {n} more", "is given {n} more", "wins {n} more"),
    "-": ("gives away {n}", "loses {n}", "sells {n}", "uses {n}"),
    "*": ("ends up with {n} times as many",),
}
CONCEPTS = {"+": "addition with carrying", "-": "subtraction with borrowing",
            "*": "multiplication by a one-digit number"}
MULTI_STEP = "multi-step word problems"
GENERAL_CONCEPTS = ("place value", "careful bookkeeping", "running totals", "checking by estimation",
                    "reading a word problem", "mental arithmetic", "order of events", "writing each step down")
MAX_VALUE = 10**6  # statements with larger numbers are not this world's (and would make long solutions)


@dataclass(frozen=True)
class Problem:
    """What a statement is built from: who, what, the start value and the operations in order."""

    name: str
    items: str
    start: int
    ops: tuple[tuple[str, int], ...]

    def totals(self) -> list[int]:
        """The running total after each operation."""
        out, value = [], self.start
        for op, n in self.ops:
            value = value + n if op == "+" else value - n if op == "-" else value * n
            out.append(value)
        return out


# --- the worked solution: one column at a time ---------------------------------------------------------------

def _digits(n: int, width: int) -> list[int]:
    """Digits of n, least significant first, padded with zeros to `width`."""
    return [int(d) for d in reversed(str(n).zfill(width))]


def column_steps(a: int, op: str, b: int) -> tuple[int, list[str]]:
    """(a op b, the column steps that compute it, right to left). The last column writes its whole value."""
    if op == "*":
        parts, carry, digits = [], 0, _digits(a, len(str(a)))
        for i, d in enumerate(digits):
            value = d * b + carry
            last = i == len(digits) - 1
            plus = f" + {carry}" if carry else ""
            parts.append(f"{d} * {b}{plus} = {value}, write {value}" if last else
                         f"{d} * {b}{plus} = {value}, write {value % 10}" + (f" carry {value // 10}" if value >= 10 else ""))
            carry = value // 10
        return a * b, parts
    width = max(len(str(a)), len(str(b)))
    top, bottom = _digits(a, width), _digits(b, width)
    parts, carry = [], 0
    for i, (t, u) in enumerate(zip(top, bottom)):
        last = i == width - 1
        if op == "+":
            value = t + u + carry
            plus = " + 1" if carry else ""
            parts.append(f"{t} + {u}{plus} = {value}, write {value}" if last else
                         f"{t} + {u}{plus} = {value}, write {value % 10}" + (" carry 1" if value >= 10 else ""))
            carry = int(value >= 10)
        else:
            minus = " - 1" if carry else ""
            value = t - u - carry
            if value >= 0 or last:
                parts.append(f"{t} - {u}{minus} = {value}, write {value}")
                carry = 0
            else:
                parts.append(f"{t} + 10 - {u}{minus} = {value + 10}, write {value + 10} borrow 1")
                carry = 1
    return (a + b if op == "+" else a - b), parts


def solution_steps(problem: Problem) -> list[str]:
    lines, value = [], problem.start
    for i, (op, n) in enumerate(problem.ops, start=1):
        result, parts = column_steps(value, op, n)
        lines.append(f"Step {i}: {value} {op} {n}. " + ". ".join(parts) + f". Total {result}.")
        value = result
    return lines


def solution_text(problem: Problem) -> str:
    return "\n".join(solution_steps(problem) + [f"The answer is $\\boxed{{{problem.totals()[-1]}}}$."])


# --- statements and rationales ----------------------------------------------------------------------------------

def statement(problem: Problem, rng: random.Random) -> str:
    pronoun = NAMES.get(problem.name, "they")
    sentences = [f"{problem.name} has {problem.start} {problem.items}."]
    for i, (op, n) in enumerate(problem.ops):
        phrase = rng.choice(PHRASES[op]).format(n=n)
        sentences.append(f"{pronoun.capitalize()} {phrase}." if i == 0 else f"Then {pronoun} {phrase}.")
    sentences.append(f"How many does {pronoun} have now?")
    return " ".join(sentences)


def rationale(problem: Problem, level: str) -> str:
    """The designer's plan: everything the statement is built from, each running total included."""
    pronoun = NAMES.get(problem.name, "they")
    steps = [f"{'add' if op == '+' else 'subtract' if op == '-' else 'multiply by'} {n} to get {total}"
             for (op, n), total in zip(problem.ops, problem.totals())]
    return (f"Plan a {level} problem with {len(problem.ops)} operation{'s' * (len(problem.ops) > 1)}. "
            f"{problem.name} starts with {problem.start} {problem.items}. Then {', then '.join(steps)}. "
            f"Ask how many {pronoun} has at the end; the answer is {problem.totals()[-1]}.")


def draw_problem(rng: random.Random, level: int) -> Problem:
    """A problem of level 0, 1 or 2 whose running totals stay positive."""
    name, items = rng.choice(list(NAMES)), rng.choice(ITEMS)
    while True:
        start = rng.randint(10, 99)
        ops = [(rng.choice("+-"), rng.randint(10, 99)) for _ in range(min(level + 1, 2))]
        if level == 2:
            ops.insert(rng.randrange(3), ("*", rng.randint(2, 9)))
        problem = Problem(name, items, start, tuple(ops))
        if all(0 < t < MAX_VALUE for t in problem.totals()):
            return problem


def concepts_of(problem: Problem, rng: random.Random) -> list[str]:
    """The operations' concepts (and multi-step word problems when there are several), topped up with general
    ones to five, in random order."""
    core = list(dict.fromkeys(CONCEPTS[op] for op, _ in problem.ops))
    if len(problem.ops) > 1:
        core.append(MULTI_STEP)
    concepts = core + rng.sample([c for c in GENERAL_CONCEPTS], 5 - len(core))
    rng.shuffle(concepts)
    return concepts


def build_arithmetic(n_items: int, seed: int) -> list[Triple]:
    """`n_items` distinct arithmetic triples, levels in equal shares, the same for the same seed."""
    rng = random.Random(seed)

    def draw():
        level = rng.randrange(len(LEVELS))
        problem = draw_problem(rng, level)
        text = statement(problem, rng)

        def build() -> Triple:
            return Triple(id=item_id("arith", text), domain="math", concepts=concepts_of(problem, rng),
                          level=LEVELS[level], rationale=rationale(problem, LEVELS[level]), problem=text,
                          answer=str(problem.totals()[-1]), solution=solution_text(problem))

        return text, build

    return draw_distinct(n_items, "arithmetic", draw)


# --- the oracle: reading statements back ------------------------------------------------------------------------

_NUMBER = r"(\d{1,7})"
_OPENING = re.compile(rf"([A-Z][a-z]+) has {_NUMBER} ([a-z]+)\.")
_PHRASE = {re.compile("(?:" + "|".join(p.replace("{n}", _NUMBER) for p in phrases) + r")\.$"): op
           for op, phrases in PHRASES.items()}
_QUESTION = re.compile(r"How many does ([a-z]+) have now\?")


def parse_problem(text: str) -> Problem | None:
    """The problem a statement in this world's wording is built from, or None (another wording, numbers outside
    the world, a question about another person or thing)."""
    text = " ".join(text.split())
    opening = _OPENING.match(text)
    question = _QUESTION.search(text)
    if opening is None or question is None or not question.group(0) == text[question.start():]:
        return None
    name, start, items = opening.group(1), int(opening.group(2)), opening.group(3)
    pronoun = NAMES.get(name, "they")
    if question.group(1) != pronoun:
        return None
    middle = text[opening.end(): question.start()].strip()
    ops = []
    for i, sentence in enumerate(s for s in re.split(r"(?<=\.) ", middle) if s):
        head = f"{pronoun.capitalize()} " if i == 0 else f"Then {pronoun} "
        if not sentence.startswith(head):
            return None
        body = sentence[len(head):]
        for pattern, op in _PHRASE.items():
            match = pattern.fullmatch(body)
            if match:
                ops.append((op, int(next(g for g in match.groups() if g is not None))))
                break
        else:
            return None
    if not ops:
        return None
    problem = Problem(name, items, start, tuple(ops))
    if not all(0 <= t < MAX_VALUE for t in problem.totals()) or any(n == 0 for _, n in ops):
        return None
    return problem


def solve(text: str) -> tuple[str, str] | None:
    """(worked solution ending in `\\boxed{answer}`, answer) for a statement of this world, else None."""
    problem = parse_problem(text)
    if problem is None:
        return None
    return solution_text(problem), str(problem.totals()[-1])


def structural_level(problem: Problem) -> int:
    """The level (1–3) a problem realises: its operations and the size of its numbers, not what it was asked for."""
    numbers = [problem.start, *(n for _, n in problem.ops)]
    if len(problem.ops) >= 3 or any(op == "*" for op, _ in problem.ops) or max(numbers) > 99:
        return 3
    return len(problem.ops)


def structure(text: str) -> dict[str, float] | None:
    """What the oracle reads from a statement: operations, column steps of its worked solution, realised level."""
    problem = parse_problem(text)
    if problem is None:
        return None
    columns, value = 0, problem.start
    for op, n in problem.ops:
        value, parts = column_steps(value, op, n)
        columns += len(parts)
    return {"operations": float(len(problem.ops)), "column_steps": float(columns),
            "level": float(structural_level(problem))}
