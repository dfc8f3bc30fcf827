"""Math answer extraction and equivalence: correctness suite and adversarial inputs (one property per test)."""

import os
import time
import uuid
from pathlib import Path

import pytest

from promptcot_pl.verify.math import check_many, extract_answer, is_equivalent, majority_vote

EQUIVALENT = [
    ("1,000", "1000"), ("12,345,678", "12345678"), ("\\frac{1}{2}", "0.5"), ("\\dfrac{3}{4}", "3/4"),
    ("\\tfrac34", "0.75"), ("\\frac12", "1/2"), ("-\\frac{7}{72}", "-7/72"), ("0.25", "\\frac{1}{4}"),
    ("1.50", "1.5"), ("3.0", "3"), ("12", "12.0"), ("\\frac{6}{4}", "\\frac{3}{2}"), (".5", "1/2"),
    ("2\\sqrt{2}", "\\sqrt{8}"), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"), ("\\frac{\\sqrt2}{2}", "\\sqrt{2}/2"),
    ("\\sqrt{12}", "2\\sqrt3"), ("2\\pi", "\\pi \\cdot 2"), ("\\frac{\\pi}{2}", "\\pi/2"), ("2^{10}", "1024"),
    ("10^{3}", "1000"), ("50\\%", "0.5"), ("50\\%", "50"), ("12.5\\%", "\\frac{1}{8}"), ("30^\\circ", "30"),
    ("30^{\\circ}", "30"), ("5 \\text{ cm}", "5"), ("\\text{5}", "5"), ("12\\text{ apples}", "12"),
    ("\\$5", "5"), ("\\$1,200", "1200"), ("x = 5", "5"), ("x=5", "x = 5"), ("y = -3", "-3"),
    ("(1,2)", "(1, 2)"), ("\\left( 1,2 \\right)", "(1,2)"), ("(3, -\\frac{1}{2})", "(3,-0.5)"),
    ("[0,1)", "[0, 1)"), ("(-\\infty, 2]", "(-\\infty,2]"), ("\\{1,2\\}", "\\{2,1\\}"), ("1, 2", "2, 1"),
    ("x=2 \\text{ or } x=3", "2, 3"), ("\\!5", "5"), ("5\\,", "5"), ("\\displaystyle \\frac{1}{3}", "1/3"),
    ("x^2+2x+1", "(x+1)^2"), ("\\frac{x}{2}", "0.5x"), ("\\infty", "\\infty"),
    ("$\\frac{7}{72}$", "\\frac{7}{72}"), ("\\(42\\)", "42"), ("  42 ", "42"), ("042", "42"), ("-0", "0"),
    ("\\sqrt{2}^2", "2"), ("\\binom{5}{2}", "10"), ("3!", "6"), ("\\frac{1}{\\frac{1}{2}}", "2"),
]
NOT_EQUIVALENT = [
    ("3", "4"), ("-5", "5"), ("100", "1000"), ("1,000", "100"), ("1/2", "2"), ("\\frac{1}{3}", "0.33"),
    ("0.333", "\\frac13"), ("\\pi", "3.14159"), ("\\sqrt{2}", "1.414"), ("2\\sqrt{3}", "\\sqrt{6}"),
    ("(1,2)", "(2,1)"), ("[0,1)", "[0,1]"), ("(0,1)", "[0,1]"), ("\\{1,2\\}", "\\{1,2,3\\}"), ("1, 2", "1, 3"),
    ("x=5", "6"), ("x^2", "2x"), ("5 \\text{ cm}", "6"), ("e", "2.718"), ("2^{10}", "1000"),
    ("\\frac{3}{4}", "\\frac{4}{3}"), ("50\\%", "0.05"), ("-\\infty", "\\infty"), ("12", "21"),
]


@pytest.mark.parametrize("pred, ref", EQUIVALENT)
def test_equivalent_answers(pred, ref):
    assert is_equivalent(pred, ref) is True


@pytest.mark.parametrize("pred, ref", NOT_EQUIVALENT)
def test_not_equivalent_answers(pred, ref):
    assert is_equivalent(pred, ref) is False


def test_batch_api_matches_single_calls():
    pairs = EQUIVALENT[:15] + NOT_EQUIVALENT[:15]
    assert check_many(pairs) == [True] * 15 + [False] * 15


@pytest.mark.parametrize("text, answer", [
    ("so the answer is $\\boxed{42}$.", "42"),
    ("first \\boxed{1} then corrected: \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{\\left(\\frac{\\sqrt{3}}{2}, 1\\right)}", "\\left(\\frac{\\sqrt{3}}{2}, 1\\right)"),
    ("\\fbox{7}", "7"),
    ("$\\boxed 5$", "5"),
    ("\\boxed {  9 }", "9"),
    ("Therefore, the final answer is $3\\sqrt{2}$.", "3\\sqrt{2}"),
    ("The answer is 17.", "17"),
    ("Answer: \\(x = 4\\)", "x = 4"),
    ("no answer at all", None),
    ("\\boxed{}", None),
    ("\\boxed{12", None),
    ("\\boxed{1} and later \\boxed{2", None),
    ("\\boxedx{3}", None),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_majority_vote_clusters_equivalent_answers():
    answer, share = majority_vote(["1/2", "0.5", "\\frac{1}{2}", "3", None, "3", "x", "2"])
    assert answer == "1/2" and share == pytest.approx(3 / 8)
    assert majority_vote([None, None]) == (None, 0.0)
    assert majority_vote(["4", "5"]) == ("4", 0.5)  # ties go to the first cluster


MARKER = Path("/tmp") / f"promptcot-pwned-{uuid.uuid4().hex}"
HOSTILE = [
    "9^{9^{9^{9}}}", "(10^{10^{10}})!", "((9!)!)!", "2^{2^{2^{2^{2^{2^{2}}}}}}", "10^{-10^{10}}",
    "1+" * 25000 + "1", "{" * 5000 + "1" + "}" * 5000, "\\sqrt{" * 600 + "2" + "}" * 600, "9" * 20000,
    f"__import__('os').system('touch {MARKER}')", f"exec(\"open('{MARKER}', 'w')\")",
    "().__class__.__bases__[0].__subclasses__()", "lambda: 0", "\\boxed{", "}}}}{{{{", "\\frac{1}{0}", "0^0",
    "\\infty - \\infty", "\\int_0^\\infty e^{-x^2} dx", "\\lim_{x \\to 0} \\frac{\\sin x}{x}", "1e999999999",
    "\x00\x00", "\\def\\a{\\a}\\a", "\\begin{pmatrix}" + "1&" * 3000 + "1\\end{pmatrix}", "x^{x^{x^{x^{x}}}}",
    "１２", "х = 5", "\\", "$$", "\\text{" + "a" * 900 + "}",
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: repr(h[:24]))
def test_hostile_answer_returns_in_time_and_executes_nothing(hostile):
    for pred, ref in ((hostile, "1"), ("1", hostile), (hostile, hostile + "+1")):
        start = time.monotonic()
        result = is_equivalent(pred, ref, timeout_s=2.0)
        assert time.monotonic() - start < 3.0
        assert result in (True, False, None)
    assert not MARKER.exists()
    assert extract_answer(f"\\boxed{{{hostile}}}") is not None or "{" in hostile or "}" in hostile or hostile == "\\"


def test_a_hung_check_costs_one_timeout_and_the_pool_recovers():
    start = time.monotonic()
    results = check_many([("9^{9^{9^{9}}}", "1"), ("\\frac{1}{2}", "0.5"), ("2\\sqrt{2}", "\\sqrt{8}")], timeout_s=1.0)
    assert results == [False, True, True]  # the hung check scored the prediction wrong
    assert time.monotonic() - start < 3.0
    assert is_equivalent("\\sqrt{12}", "2\\sqrt{3}") is True  # replacement worker answers


def test_unicode_lookalikes_are_not_silently_equal():
    assert is_equivalent("х", "x") is not True  # Cyrillic х is not the variable x
    assert is_equivalent("１２", "12") is True  # full-width digits are digits (NFKC)


def test_main_process_state_is_untouched():
    before = dict(os.environ)
    is_equivalent("__import__('os').environ.clear()", "1")
    assert dict(os.environ) == before
