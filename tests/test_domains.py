import re
import subprocess
import sys

import pytest
import sympy as sp

from promptcot_pl.domains import build_domain, split_heldout
from promptcot_pl.domains.code_families import FAMILIES as CODE_FAMILIES
from promptcot_pl.domains.math import FAMILIES as MATH_FAMILIES
from promptcot_pl.domains.math import LEVELS

NUMBER = re.compile(r"\d+")


@pytest.fixture(scope="module")
def math_items():
    return build_domain("math", 1500, seed=3)


@pytest.fixture(scope="module")
def code_items():
    return build_domain("code", 120, seed=3)


def test_math_domain_breadth(math_items):
    assert len(MATH_FAMILIES) >= 20
    assert len({c for t in math_items for c in t.concepts}) >= 20
    assert {t.level for t in math_items} == set(LEVELS) and len(LEVELS) >= 3
    assert all(len(t.concepts) == 5 for t in math_items)
    assert len({t.problem for t in math_items}) == len(math_items)
    assert len({t.id for t in math_items}) == len(math_items)


def test_math_domain_is_seeded():
    assert build_domain("math", 50, seed=1) == build_domain("math", 50, seed=1)
    assert build_domain("math", 50, seed=1) != build_domain("math", 50, seed=2)


def test_math_solution_boxes_the_answer(math_items):
    for t in math_items:
        assert t.solution.rstrip().endswith(f"\\boxed{{{t.answer}}}$."), t


def test_rationale_fixes_every_number_of_the_problem(math_items, code_items):
    """Knowing z makes x predictable: each number in the problem statement is stated in the rationale."""
    for t in math_items + code_items:
        missing = set(NUMBER.findall(t.problem)) - set(NUMBER.findall(t.rationale))
        # Code statements carry fixed format numbers (input bounds); math statements carry none of their own.
        allowed = {"0", "1", "2", "10000", "100000", "3"} if t.domain == "code" else {"2"}
        assert missing <= allowed, (t.rationale, t.problem, missing)


def _divisors_by_trial(n: int) -> int:
    """Count divisors in pairs (d, n/d) with d ≤ √n."""
    count, d = 0, 1
    while d * d <= n:
        if n % d == 0:
            count += 1 if d * d == n else 2
        d += 1
    return count


@pytest.mark.parametrize("pattern, check", [
    (r"Find the remainder when \$(\d+)\^\{(\d+)\}\$ is divided by \$(\d+)\$", lambda a, n, m: pow(a, n, m)),
    (r"How many zeros are at the end of \$(\d+)!\$", lambda n: len(str(sp.factorial(n))) - len(str(sp.factorial(n)).rstrip("0"))),
    (r"Compute \$1\^2\+2\^2\+\\dots\+(\d+)\^2\$", lambda n: sum(k * k for k in range(1, n + 1))),
    (r"How many positive divisors does \$(\d+)\$ have", _divisors_by_trial),
])
def test_math_answers_match_brute_force(math_items, pattern, check):
    found = 0
    for t in math_items:
        match = re.search(pattern, t.problem)
        if match:
            found += 1
            assert t.answer == str(check(*map(int, match.groups()))), t.problem
    assert found > 0


def test_code_domain_breadth_and_tests(code_items):
    assert len(CODE_FAMILIES) >= 10
    assert len({t.problem for t in code_items}) == len(code_items)
    for t in code_items:
        assert t.tests and 3 <= len(t.tests) <= 4 and t.solution.startswith("```python\n")


def test_code_reference_solutions_pass_their_tests_in_a_real_process(code_items):
    for t in code_items[:40]:
        source = t.solution.removeprefix("```python\n").removesuffix("```")
        for test in t.tests:
            out = subprocess.run([sys.executable, "-c", source], input=test["input"], capture_output=True,
                                 text=True, timeout=20)
            assert out.returncode == 0 and out.stdout == test["output"], (t.problem, test, out.stderr)


def test_split_is_disjoint_seeded_and_sized(math_items):
    train, heldout = split_heldout(math_items, 0.1, seed=0)
    assert len(heldout) == 150 and len(train) == 1350
    assert not {t.id for t in train} & {t.id for t in heldout}
    assert split_heldout(math_items, 0.1, seed=0) == (train, heldout)
    assert split_heldout(math_items, 0.1, seed=1)[1] != heldout


def test_a_heldout_count_replaces_the_fraction(math_items):
    train, heldout = split_heldout(math_items, 0.1, seed=0, count=600)
    assert len(heldout) == 600 and len(train) == 900 and not {t.id for t in train} & {t.id for t in heldout}
    from promptcot_pl.config.loading import ConfigError
    from promptcot_pl.experiment import load_config

    with pytest.raises(ConfigError, match="key 'domain.n_heldout'"):
        load_config(None, ["domain.n_items=100", "domain.n_heldout=100"])
