import math

import pytest
import torch

from promptcot_pl.losses import elbo_estimate, em_weights, iwae_bound
from tests.reference import masked_nll, weighted_nll

LP = torch.tensor([[-10.0, -12.0, -9.0], [-5.0, -5.5, -8.0]])
LQ = torch.tensor([[-3.0, -1.0, -4.0], [-2.0, -2.0, -1.0]])


def test_best_is_one_hot_argmax_of_the_reward():
    """Row 0: R = (−10, −12, −9) → k = 2. Row 1: R = (−5, −5.5, −8) → k = 0."""
    assert em_weights(LP, LQ, selection="best").tolist() == [[0, 0, 1], [1, 0, 0]]


def test_softmax_hand_computed():
    """τ = 1, β = 1: w ∝ exp(R − log q). Row 1: R − log q = (−3, −3.5, −7) → w = e^{−3}, e^{−3.5}, e^{−7} / sum."""
    w = em_weights(LP, LQ, selection="softmax", tau=1.0, beta=1.0)
    raw = [math.exp(-3), math.exp(-3.5), math.exp(-7)]
    assert w[1].tolist() == pytest.approx([r / sum(raw) for r in raw])
    assert torch.allclose(w.sum(dim=1), torch.ones(2))


def test_softmax_tau_to_zero_is_best_of_k():
    assert torch.allclose(em_weights(LP, LQ, selection="softmax", tau=1e-4, beta=0.0),
                          em_weights(LP, LQ, selection="best"))


def test_length_normalisation_changes_the_winner():
    """R / |tokens|: row 0 becomes (−10/10, −12/20, −9/3) = (−1, −0.6, −3) → k = 1."""
    tokens = torch.tensor([[10, 20, 3], [1, 1, 1]])
    assert em_weights(LP, LQ, selection="best", p_tokens=tokens)[0].tolist() == [0, 1, 0]


def test_iwae_hand_computed_and_k1_equals_the_elbo_sample():
    """Row 1: log((e^{−3} + e^{−3.5} + e^{−7}) / 3)."""
    expected = math.log((math.exp(-3) + math.exp(-3.5) + math.exp(-7)) / 3)
    assert float(iwae_bound(LP, LQ)[1]) == pytest.approx(expected)
    assert torch.allclose(iwae_bound(LP[:, :1], LQ[:, :1]), elbo_estimate(LP[:, :1], LQ[:, :1]))
    assert torch.allclose(iwae_bound(LP[:, :1], LQ[:, :1]), (LP[:, 0] - LQ[:, 0]).double())


def test_iwae_is_at_least_the_elbo():
    torch.manual_seed(0)
    lp, lq = torch.randn(50, 8) * 3, torch.randn(50, 8) * 3
    assert torch.all(iwae_bound(lp, lq) >= elbo_estimate(lp, lq) - 1e-9)


VALID = torch.tensor([[True, False, False], [False, False, False]])


def test_invalid_candidates_weigh_nothing():
    """Row 0: only candidate 0 is valid, so it wins whatever R says; row 1 has none: all weights 0."""
    assert em_weights(LP, LQ, selection="best", valid=VALID).tolist() == [[1, 0, 0], [0, 0, 0]]
    w = em_weights(LP, LQ, selection="softmax", tau=1.0, beta=1.0, valid=VALID)
    assert w.tolist() == [[1, 0, 0], [0, 0, 0]]


def test_the_bound_with_invalid_candidates_counts_them_as_zero_weight():
    """Row 0: log((e^{−7} + 0 + 0) / 3); ELBO of q restricted to the valid set: −7 + log(1/3); row 1: −inf."""
    iwae, elbo = iwae_bound(LP, LQ, VALID), elbo_estimate(LP, LQ, VALID)
    assert float(iwae[0]) == pytest.approx(-7 - math.log(3)) and float(elbo[0]) == pytest.approx(-7 - math.log(3))
    assert iwae[1] == -math.inf and elbo[1] == -math.inf
    assert torch.equal(iwae_bound(LP, LQ, torch.ones(2, 3, dtype=torch.bool)), iwae_bound(LP, LQ))
    torch.manual_seed(0)
    lp, lq = torch.randn(50, 8) * 3, torch.randn(50, 8) * 3
    valid = torch.rand(50, 8) > 0.3
    valid[:, 0] = True
    assert torch.all(iwae_bound(lp, lq, valid) >= elbo_estimate(lp, lq, valid) - 1e-9)


def test_weighted_nll_hand_computed_and_unit_weights_equal_masked_nll():
    """Two rows, vocab 2, uniform logits: every target token has NLL ln 2. Row 0 has 2 target tokens, row 1 has 1.
    With w = (1, 3): (1·2 ln2 + 3·1 ln2) / (1·2 + 3·1) = ln 2; with one-hot weights, only row 1 counts."""
    logits = torch.zeros(2, 3, 2)
    labels = torch.tensor([[-100, 0, 1], [-100, -100, 1]])
    loss, count = weighted_nll(logits, labels, torch.tensor([1.0, 3.0]))
    assert float(loss) == pytest.approx(math.log(2)) and float(count) == 5
    loss, _ = weighted_nll(logits + torch.tensor([0.0, 1.0]), labels, torch.tensor([0.0, 1.0]))
    assert float(loss) == pytest.approx(-math.log(math.e / (1 + math.e)))
    torch.manual_seed(1)
    logits = torch.randn(3, 5, 7)
    labels = torch.randint(0, 7, (3, 5))
    labels[:, :2] = -100
    assert float(weighted_nll(logits, labels, torch.ones(3))[0]) == pytest.approx(float(masked_nll(logits, labels)[0]))
