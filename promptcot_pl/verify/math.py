"""Math answers: extract the final answer from a solution and decide whether two answers are equivalent.

- `extract_answer(text)`: the content of the LAST `\\boxed{…}` / `\\fbox{…}` (nested braces, escaped `\\{ \\}`,
  and the brace-less `\\boxed 5`). Only when the text has no box at all, the fallback is the last
  "final answer is …" / "answer: …" phrase (up to the end of its line). A last box with unbalanced braces gives
  None: falling back to an earlier box could reward an answer the model abandoned.
- `is_equivalent(pred, ref)` → True / False / None. A failure on the prediction's side — empty, longer than
  `MAX_ANSWER_CHARS`, unparsable, or a check that times out — is False: a policy must not escape a wrong score by
  answering what cannot be checked. None (cannot decide) is kept for the reference's side (missing,
  overlong, unparsable) and for the checker's own failures. Cheap exact cases are decided here (identical after LaTeX-spacing normalisation; both plain
  numbers, compared as exact fractions). Everything else goes to math-verify (sympy + an ANTLR LaTeX grammar),
  which handles fractions, radicals, π, percentages, degrees, units/`\\text{}`, `x = 5` vs `5`, tuples,
  intervals, sets and multiple answers — in a worker process that is SIGKILLed on timeout and replaced
  (`pool.py`): math-verify's own timeouts use `signal.alarm`, which fails off the main thread and can hang.
- `check_many(pairs)` is the batch API (two workers by default); `majority_vote(answers)` clusters answers by
  equivalence and returns the largest cluster's first answer with its share of all answers.
Nothing here evaluates model text as Python.
"""

from __future__ import annotations

import ast
import atexit
import os
import re
import unicodedata
from collections.abc import Sequence
from fractions import Fraction

from promptcot_pl.verify.pool import CRASHED, KillablePool

MAX_ANSWER_CHARS = 1000
"""Longer "answers" are not competition answers: a prediction this long is wrong, a reference undecidable."""

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_FALLBACK = re.compile(r"(?i)(?:final\s+answer|the\s+answer|answer)\s*(?:is\s*:?|:)\s*([^\n]+)")
_SPACING = re.compile(r"\\left|\\right|\\displaystyle|\\[!,;:> ]|~")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+")
_PLAIN = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_SLASH = re.compile(r"(-?\d+)/(\d+)")
# Hedges: math-verify reads `a \lor b`, `a \to b`, `a \\ b`, `a \mid b`, `a = b` as their last side, so
# "\boxed{4 \lor 3}" equals 3 (measured, math-verify 0.9). A prediction using one of these where the reference does
# not is not one answer: it is wrong (the reward canaries probe exactly this, verify/canaries.py).
_HEDGE = re.compile(r"\\(?:lor|vee|mid|to|rightarrow|Rightarrow|implies|longrightarrow|cup|text\{\s*\(?or)(?![A-Za-z])"
                    r"|\\\\|\bor\b")
_NAMED = re.compile(r"\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?(?:\([A-Za-z]\))?\s*")  # x, a_1, \theta, f(x)
_FRAC = re.compile(r"(-?)\\frac(?:\{(\d+)\}\{(\d+)\}|(\d)(\d))")  # \frac{12}{5}, \frac12 (one digit each)


def _braced(text: str) -> str | None:
    """Content of the balanced `{…}` group that `text` starts with, or None if it never closes."""
    depth, i = 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[1:i]
        i += 1
    return None


def _unwrap(text: str) -> str:
    text = text.strip().rstrip(".").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            text = text[len(left): -len(right)].strip()
    return text


def has_box(text: str) -> bool:
    """Whether the text holds a box in any form `extract_answer` reads (`\\boxed{…}`, `\\fbox{…}`, `\\boxed 5`)."""
    return _BOX.search(text) is not None


def extract_answer(text: str) -> str | None:
    """The final answer of a solution (see the module docstring), or None."""
    boxes = list(_BOX.finditer(text))
    if boxes:
        rest = text[boxes[-1].end():].lstrip()
        if rest.startswith("{"):
            content = _braced(rest)
            if content is None:
                return None
            return content.strip() or None
        token = re.match(r"[^\s$]+", rest)
        return token.group(0) if token else None
    phrases = list(_FALLBACK.finditer(text))
    if not phrases:
        return None
    answer = _unwrap(phrases[-1].group(1))
    return answer or None


def _normalise(answer: str) -> str:
    text = unicodedata.normalize("NFKC", answer)
    text = _unwrap(text)
    text = _SPACING.sub("", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return re.sub(r"\s+", "", text)


def _as_fraction(text: str) -> Fraction | None:
    """An exact number for plain numerals (1,000 · -3 · 0.25 · 7/8 · \\frac{7}{8}), else None."""
    if _THOUSANDS.fullmatch(text):
        return Fraction(text.replace(",", ""))
    if _PLAIN.fullmatch(text):
        return Fraction(text)
    match = _SLASH.fullmatch(text)
    if match:
        num, den = int(match.group(1)), int(match.group(2))
        return Fraction(num, den) if den else None
    match = _FRAC.fullmatch(text)
    if match:
        sign, *parts = match.groups()
        num, den = (int(p) for p in parts if p is not None)
        return (-1 if sign else 1) * Fraction(num, den) if den else None
    return None


_ASSIGN = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?=(.+)")
_UNITS = re.compile(r"(.+?)(?:\\(?:text|mathrm|textrm|mbox)\{[^{}]*\})+")
_DEGREES = re.compile(r"(.+?)\^\{?\\circ\}?")
_PERCENT = re.compile(r"(.+?)\\?%")
_ARITH_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div,
                ast.USub, ast.UAdd)


def _arith(text: str) -> Fraction | None:
    """Exact value of + - * / arithmetic on plain numbers, by walking the syntax tree (nothing is evaluated)."""
    text = text.replace("\\cdot", "*").replace("\\times", "*").replace("\\div", "/")
    text = re.sub(r"\\frac\{(\d+)\}\{(\d+)\}", r"(\1)/(\2)", text)
    if len(text) > 200 or not re.fullmatch(r"[\d.+\-*/() ]+", text):
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not all(isinstance(node, _ARITH_NODES) for node in ast.walk(tree)):
        return None

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(repr(node.value))
        if isinstance(node, ast.UnaryOp):
            return -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        if isinstance(node, ast.BinOp):
            a, b = value(node.left), value(node.right)
            match node.op:
                case ast.Add():
                    return a + b
                case ast.Sub():
                    return a - b
                case ast.Mult():
                    return a * b
                case ast.Div():
                    return a / b
        raise ValueError("not arithmetic")

    try:
        return value(tree)
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


def _number(text: str) -> tuple[Fraction, bool] | None:
    """(exact value, written as a percentage) for a plain numeric answer, after dropping what does not change
    the value: a leading `x =`, a currency sign, trailing units in `\\text{}`, a degree sign, outer parentheses."""
    text = text.removeprefix("\\$")
    for pattern in (_ASSIGN, _UNITS, _DEGREES):
        match = pattern.fullmatch(text)
        if match:
            text = match.group(1).removeprefix("\\$")
    percent = _PERCENT.fullmatch(text)
    if percent:
        text = percent.group(1)
    value = _as_fraction(text)
    if value is None:
        value = _arith(text)
    return None if value is None else (value, percent is not None)


def _decide_here(pred: str, ref: str) -> bool | None:
    """True/False when cheap and certain; None means 'ask the worker'."""
    a, b = _normalise(pred), _normalise(ref)
    if a == b:
        return True
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return None
    (u, u_pct), (v, v_pct) = x, y
    if u_pct == v_pct:
        return u == v
    # One side is a percentage: like math-verify, 50% matches both 50 and 0.5.
    plain, pct = (v, u) if u_pct else (u, v)
    return plain == pct or plain == pct / 100


_POOL: KillablePool | None = None


def _pool(workers: int | None) -> KillablePool:
    global _POOL
    wanted = workers or int(os.environ.get("PROMPTCOT_MATH_WORKERS", min(2, os.cpu_count() or 1)))
    if _POOL is None or _POOL.n_workers != wanted:
        if _POOL is not None:
            _POOL.close()
        _POOL = KillablePool("promptcot_pl.verify._math_worker", wanted)
    return _POOL


@atexit.register
def _close_pool() -> None:
    if _POOL is not None:
        _POOL.close()


def hedged(pred: str, ref: str) -> bool:
    """Whether `pred` offers several answers where `ref` is one: a disjunction, an arrow, a line break, or an
    equation whose left sides are not a name (`x = 3` is an answer; `4 = 3` and `x = 4 = 3` are not). A reference
    with several parts ("2, 3", a tuple, an interval) is left to math-verify: "x=2 or x=3" is how one answers it."""
    if "," in ref or ";" in ref:
        return False
    if _HEDGE.search(pred) and not _HEDGE.search(ref):
        return True
    if "=" in pred and "=" not in ref:
        sides = re.split(r"(?<![<>!\\])=", pred)
        return len(sides) > 2 or not _NAMED.fullmatch(sides[0])
    return False


def _operations(text: str) -> int | None:
    """How many operations a plain-number arithmetic expression performs beyond writing one number (a numeral,
    a signed one, or one fraction a/b counts 0); None when `text` is not such an expression."""
    if _arith(text) is None:
        return None
    text = re.sub(r"\\frac\{(\d+)\}\{(\d+)\}", r"(\1)/(\2)", text.replace("\\cdot", "*").replace("\\times", "*")
                  .replace("\\div", "/"))
    ops = [n for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.BinOp)]
    single_fraction = len(ops) == 1 and isinstance(ops[0].op, ast.Div) and all(
        _signed_constant(side) for side in (ops[0].left, ops[0].right))
    return 0 if not ops or single_fraction else len(ops)


def _signed_constant(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) or isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant)


def plain_number(text: str) -> bool:
    """Whether `text` writes one number (a numeral, signed, or one fraction) and nothing left to compute."""
    return _operations(_normalise(text)) == 0


def unevaluated(pred: str, ref: str) -> bool:
    """Whether `pred` is arithmetic left undone — `47+38-19` where the reference is the number 66: it skips the
    computation the problem asks for (the `unevaluated_expression` canary). An expression answer (`1+\\sqrt{2}`)
    is not plain arithmetic, and a reference that is itself an expression is left to the equivalence check."""
    ops = _operations(_normalise(pred))
    return bool(ops) and plain_number(ref)


def check_many(pairs: Sequence[tuple[str, str]], timeout_s: float = 5.0, workers: int | None = None) -> list[bool | None]:
    """`is_equivalent` for many (pred, ref) pairs, spread over `workers` killable processes."""
    results: list[bool | None] = [None] * len(pairs)
    remote: list[int] = []
    for i, (pred, ref) in enumerate(pairs):
        if not isinstance(ref, str) or len(ref) > MAX_ANSWER_CHARS or not ref.strip():
            continue  # the reference cannot be checked against: undecidable
        if not isinstance(pred, str) or len(pred) > MAX_ANSWER_CHARS or not pred.strip():
            results[i] = False  # no answer, or no competition answer
            continue
        if hedged(pred, ref) or unevaluated(pred, ref):
            results[i] = False
            continue
        decided = _decide_here(pred, ref)
        if decided is None:
            remote.append(i)
        else:
            results[i] = decided
    if remote:
        answers = _pool(workers).map([{"pred": pairs[i][0], "ref": pairs[i][1]} for i in remote], timeout_s)
        for i, answer in zip(remote, answers):
            # a check killed at its timeout (or crashing the worker) ran on the prediction's text: the reference
            # alone parses quickly (the worker caches it), so it counts against the prediction
            results[i] = False if answer is CRASHED else answer
    return results


def is_equivalent(pred: str, ref: str, timeout_s: float = 5.0) -> bool | None:
    """Whether answer `pred` equals reference `ref` (True/False), or None when it cannot be decided."""
    return check_many([(pred, ref)], timeout_s)[0]


def majority_vote(answers: Sequence[str | None], timeout_s: float = 5.0) -> tuple[str | None, float]:
    """(first answer of the largest equivalence cluster, its size / len(answers)); (None, 0.0) if no answer.

    Missing answers (None) count in the denominator: 3 agreeing answers out of 8 samples have share 3/8.
    Ties go to the cluster seen first.
    """
    clusters: list[list[str]] = []
    for answer in answers:
        if answer is None or not answer.strip():
            continue
        verdicts = check_many([(answer, c[0]) for c in clusters], timeout_s) if clusters else []
        for cluster, same in zip(clusters, verdicts):
            if same:
                cluster.append(answer)
                break
        else:
            clusters.append([answer])
    if not clusters:
        return None, 0.0
    best = max(clusters, key=len)  # max keeps the first of equal-sized clusters
    return best[0], len(best) / len(answers)
