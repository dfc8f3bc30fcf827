import math

import pytest
import torch

from tests.reference import gathered_sequence_logprobs, masked_nll, sequence_logprobs, token_logprobs

IGNORE = -100


def _example():
    """Vocab 3, one sequence of 3 tokens [0, 2, 0] whose first token is prompt (label -100).

    Logits at t=0 are [ln1, ln2, ln3] → softmax [1/6, 2/6, 3/6]; the next token is 2 → log p = ln(1/2).
    Logits at t=1 are [0, 0, 0] → uniform; the next token is 0 → log p = ln(1/3).
    Logits at t=2 predict beyond the sequence and are never scored.
    """
    logits = torch.tensor([[[0.0, math.log(2), math.log(3)], [0.0, 0.0, 0.0], [5.0, -5.0, 0.0]]])
    labels = torch.tensor([[IGNORE, 2, 0]])
    return logits, labels


def test_token_logprobs_hand_computed():
    logp, mask = token_logprobs(*_example())
    assert mask.tolist() == [[True, True]]
    assert torch.allclose(logp, torch.tensor([[math.log(1 / 2), math.log(1 / 3)]]))


def test_sequence_logprob_is_the_sum_not_the_mean():
    """log p(target) = ln(1/2) + ln(1/3) = −ln 6."""
    assert torch.allclose(sequence_logprobs(*_example()), torch.tensor([-math.log(6)]))


def test_masked_nll_is_a_token_mean_over_the_batch():
    """Batch of the example (2 target tokens, NLL ln 6) and a second row with 1 target token under uniform logits
    (NLL ln 3): token mean = (ln 6 + ln 3) / 3, not the mean of per-row means."""
    logits, labels = _example()
    logits2 = torch.zeros(1, 3, 3)
    labels2 = torch.tensor([[IGNORE, IGNORE, 1]])
    loss, n = masked_nll(torch.cat([logits, logits2]), torch.cat([labels, labels2]))
    assert int(n) == 3
    assert math.isclose(float(loss), (math.log(6) + math.log(3)) / 3, rel_tol=1e-6)


def test_masked_positions_contribute_nothing_and_get_no_gradient():
    logits, labels = _example()
    logits = logits.clone().requires_grad_(True)
    labels = labels.clone()
    labels[0, 1] = IGNORE  # only the last target token remains
    loss, n = masked_nll(logits, labels)
    loss.backward()
    assert int(n) == 1 and math.isclose(float(loss.detach()), math.log(3), rel_tol=1e-6)
    assert torch.all(logits.grad[0, 0] == 0) and torch.all(logits.grad[0, 2] == 0)
    assert torch.any(logits.grad[0, 1] != 0)


def test_gathered_sequence_logprobs_hand_computed():
    """Two targets share row 0: target 0's tokens (2, 1) are predicted at positions 0 and 1, target 1's token (0) also
    at position 0 (the prompt's last position predicts every target's first token)."""
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    sums, tokens = gathered_sequence_logprobs(logits, rows=torch.tensor([0, 0, 0]), positions=torch.tensor([0, 1, 0]),
                                              labels=torch.tensor([2, 1, 0]), owners=torch.tensor([0, 0, 1]), n=2)
    assert sums.tolist() == [pytest.approx(math.log(0.25) + math.log(0.8)), pytest.approx(math.log(0.5))]
    assert tokens.tolist() == [2, 1]
