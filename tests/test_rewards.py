import pytest

from promptcot_pl.data.records import Problem
from promptcot_pl.verify.rewards import Rewards
from tests.reference import reward

MATH = Problem(id="m", domain="math", problem="1/2 as a decimal?", answer="\\frac{1}{2}")
CODE = Problem(id="c", domain="code", problem="double it", tests=[{"input": "2\n", "output": "4\n"},
                                                                {"input": "5\n", "output": "10\n"}])
GOOD_CODE = "Here:\n```python\nprint(2 * int(input()))\n```"
BAD_CODE = "```python\nprint(int(input()) + 2)\n```"


def test_math_reward_values():
    assert reward("... so \\boxed{0.5}", MATH) == 1.0
    assert reward("... so \\boxed{0.25}", MATH) == 0.0
    assert reward("I do not know", MATH) == 0.0  # no final answer: wrong, not unscorable
    assert reward("\\boxed{9^{9^{9^{9}}}}", MATH) == 0.0  # a check that cannot finish is the answer's fault


@pytest.mark.parametrize("answer", ["1" * 2000, "\\frac{", "@@ ## ;;", "\\begin{array}", "}{"])
def test_an_answer_that_cannot_be_checked_scores_0_not_unscorable(answer):
    """a policy answering what the checker cannot read when unsure must be counted wrong."""
    completion = f"I am not sure. \\boxed{{{answer}}}"
    assert reward(completion, MATH) == 0.0


@pytest.mark.parametrize("reference", ["1" * 2000, "@@ ## ;;"])
def test_only_a_broken_reference_is_unscorable(reference):
    problem = Problem(id="r", domain="math", problem="?", answer=reference)
    assert reward("\\boxed{3}", problem) is None


def test_code_reward_values():
    assert reward(GOOD_CODE, CODE) == 1.0
    assert reward(BAD_CODE, CODE) == 0.0  # passes test 1 only: ALL tests must pass
    assert reward("no code", CODE) == 0.0


def test_one_signature_and_batch_agree():
    completions = ["\\boxed{1/2}", "\\boxed{3}", GOOD_CODE, BAD_CODE, "nothing"]
    problems = [MATH, MATH, CODE, CODE, CODE]
    singles = [reward(c, p) for c, p in zip(completions, problems)]
    assert singles == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert Rewards().score(completions, problems) == singles


def test_missing_target_is_a_clear_error():
    with pytest.raises(ValueError, match="no 'answer'"):
        reward("\\boxed{1}", Problem(id="x", domain="math", problem="?"))
    with pytest.raises(ValueError, match="no reward for domain 'chem'"):
        reward("\\boxed{1}", Problem(id="x", domain="chem", problem="?", answer="1"))
