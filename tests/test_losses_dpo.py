"""DPO-family losses against hand-computed values, and sigmoid DPO against TRL's DPOTrainer on the same batch."""

import math

import pytest
import torch

from promptcot_pl.losses.dpo import chosen_nll, dpo_loss

# policy chosen / rejected, reference chosen / rejected: r_w = -5 - (-6) = 1, r_l = -7 - (-6) = -1
PC, PR, RC, RR = (torch.tensor([v]) for v in (-5.0, -7.0, -6.0, -6.0))


def test_sigmoid_dpo():
    """-log σ(β (r_w - r_l)) = log(1 + e^{-0.2}) = 0.598138869 for β = 0.1; rewards β r = ±0.1."""
    out = dpo_loss(PC, PR, RC, RR, beta=0.1)
    assert out.losses.item() == pytest.approx(math.log1p(math.exp(-0.2)), abs=1e-6)
    assert out.losses.item() == pytest.approx(0.598138869, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.1) and out.rejected_rewards.item() == pytest.approx(-0.1)


def test_conservative_dpo():
    """ε = 0.1: 0.9 · log(1 + e^{-0.2}) + 0.1 · log(1 + e^{0.2}) = 0.9 · 0.598139 + 0.1 · 0.798139 = 0.618139."""
    out = dpo_loss(PC, PR, RC, RR, beta=0.1, label_smoothing=0.1)
    assert out.losses.item() == pytest.approx(0.618138869, abs=1e-6)


def test_ipo():
    """|y_w| = 4, |y_l| = 2: h = 1/4 - (-1)/2 = 0.75; (h - 1/(2β))² = (0.75 - 5)² = 18.0625."""
    out = dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type="ipo", chosen_tokens=torch.tensor([4]),
                   rejected_tokens=torch.tensor([2]))
    assert out.losses.item() == pytest.approx(18.0625)
    with pytest.raises(ValueError, match="token"):
        dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type="ipo")


def test_rpo_term_is_the_chosen_nll_per_token():
    """log-probs -5 and -3 over 4 and 2 tokens: 8 / 6."""
    assert chosen_nll(torch.tensor([-5.0, -3.0]), torch.tensor([4, 2])).item() == pytest.approx(8 / 6)


def test_the_loss_pushes_the_margin_up():
    pc = torch.tensor([-5.0], requires_grad=True)
    pr = torch.tensor([-7.0], requires_grad=True)
    dpo_loss(pc, pr, RC, RR, beta=0.1).losses.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises chosen, lowers rejected


def test_sigmoid_dpo_equals_trl_dpo_trainer_on_the_same_batch(tiny_dir, tmp_path):
    """TRL (test/bench-only dependency) computes its loss from its own collated batch and reference model; we take
    the policy's and the reference's log-probs of that same batch and apply our loss function."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from promptcot_pl.models import load_model, load_tokenizer
    from tests.reference import sequence_logprobs

    torch.manual_seed(0)
    tokenizer = load_tokenizer(tiny_dir)
    policy, ref = load_model(tiny_dir), load_model(tiny_dir)
    with torch.no_grad():  # a reference that differs from the policy, so the loss is not log 2
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rows = [{"prompt": f"Problem:\nWhat is {a} + {b}?\nSolution:\n", "chosen": f"The answer is $\\boxed{{{a + b}}}$.",
             "rejected": f"The answer is $\\boxed{{{a * b + 1}}}$."} for a, b in [(2, 3), (10, 7), (4, 4), (1, 9)]]
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, beta=0.1, label_smoothing=0.0,
                     use_cpu=True, report_to="none", max_length=None, dataset_num_proc=None)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    policy.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        logps = [sequence_logprobs(m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                   labels) for m in (policy, ref)]
    (pc, pr), (rc, rr) = (lp.chunk(2) for lp in logps)
    ours = dpo_loss(pc, pr, rc, rr, beta=0.1).losses.mean().item()
    assert abs(ours - math.log(2)) > 1e-3
    assert ours == pytest.approx(trl_loss, abs=1e-5)
