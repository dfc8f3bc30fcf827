"""Format validity of rollouts: think blocks, final boxed answers, code blocks, truncation."""

import pytest

from promptcot_pl.verify.format import invalid_reason


@pytest.mark.parametrize("text, domain, reason", [
    ("Add them. The answer is $\\boxed{5}$.", "math", None),
    ("<think>2+3=5</think>The answer is $\\boxed{5}$.", "math", None),
    ("  <think>\nhmm\n</think>\n\\boxed{x^2}", "math", None),
    # every box form the answer extraction reads is the trained format too (one rule for both)
    ("So $\\fbox{5}$.", "math", None),
    ("So \\boxed 5.", "math", None),
    ("The answer is 5.", "math", "no_boxed_answer"),
    ("The answer is $\\boxed{}$.", "math", "no_boxed_answer"),
    ("The answer is $\\boxed{5", "math", "no_boxed_answer"),
    ("<think>a</think><think>b</think>\\boxed{5}", "math", "broken_think"),
    ("<think>never closed \\boxed{5}", "math", "broken_think"),
    ("\\boxed{5}</think>", "math", "broken_think"),
    ("text first <think>x</think>\\boxed{5}", "math", "broken_think"),
    ("<think>\\boxed{5}</think>", "math", "empty"),
    ("   ", "math", "empty"),
    ("Read n.\n```python\nprint(int(input()) * 2)\n```", "code", None),
    ("<think>plan</think>```\nprint(1)\n```", "code", None),
    ("print(1)", "code", "no_code"),
    ("```python\n\n```", "code", "no_code"),
])
def test_invalid_reason(text, domain, reason):
    assert invalid_reason(text, domain) == reason


def test_a_truncated_rollout_is_invalid_whatever_it_holds():
    assert invalid_reason("The answer is $\\boxed{5}$.", "math", truncated=True) == "truncated"


def test_unknown_domain():
    with pytest.raises(ValueError, match="domain"):
        invalid_reason("x", "chess")
