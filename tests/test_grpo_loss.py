"""GRPO's loss (`losses/grpo.py`) against hand-computed values and against TRL's `GRPOTrainer._compute_loss` on the
same batch, advantages and clipping: loss and every parameter's gradient to 1e-5."""

import pytest
import torch

from promptcot_pl.losses.grpo import group_advantages, grpo_loss, truncated_is_weights, zero_variance


def test_advantages_are_centred_per_group_and_scaled_by_its_std():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    adv = group_advantages(rewards, 4, scale=True)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()
    assert torch.allclose(adv[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4))
    assert torch.equal(adv[4:], torch.zeros(4))  # all equal: no signal
    assert torch.allclose(group_advantages(rewards, 4, scale=False)[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    assert zero_variance(rewards, 4).tolist() == [False, True]


def test_a_group_with_identical_rewards_gives_zero_gradient():
    logps = torch.randn(10, requires_grad=True)
    adv = torch.cat([group_advantages(torch.tensor([1.0, 0.0]), 2), group_advantages(torch.ones(2), 2)])
    per_token_adv = adv.repeat_interleave(torch.tensor([2, 3, 2, 3]))  # four completions of 2–3 tokens
    grpo_loss(logps, logps.detach() + 0.1 * torch.randn(10), per_token_adv, eps_low=0.2, eps_high=0.28,
              normaliser=10.0).loss.backward()
    assert logps.grad[5:].abs().sum() == 0 and logps.grad[:5].abs().sum() > 0


def test_clipping_counts_and_stops_the_gradient_beyond_each_bound():
    old = torch.zeros(4)
    logps = torch.log(torch.tensor([0.5, 1.5, 0.5, 1.5])).requires_grad_()
    adv = torch.tensor([-1.0, 1.0, 1.0, -1.0])
    out = grpo_loss(logps, old, adv, eps_low=0.2, eps_high=0.28, normaliser=4.0)
    out.loss.backward()
    # ρ = 0.5 with A < 0 and ρ = 1.5 with A > 0 are clipped: no gradient; the other two are not
    assert (out.clipped_low.item(), out.clipped_high.item()) == (1.0, 1.0)
    assert logps.grad[0] == 0 and logps.grad[1] == 0 and logps.grad[2] != 0 and logps.grad[3] != 0


def test_importance_weights_are_truncated_at_the_cap():
    w = truncated_is_weights(torch.tensor([0.0, 0.0]), torch.tensor([-0.1, -5.0]), cap=2.0)
    assert torch.allclose(w, torch.tensor([torch.exp(torch.tensor(0.1)).item(), 2.0]))


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_and_gradients_equal_trls_grpo_trainer(tiny_dir, tmp_path, beta):
    """TRL (a test/bench-only dependency) computes its DAPO loss from padded [B, T] tensors through its own forward
    pass; ours runs through the fits' floors (`models/head.target_logprobs`, flat completion tokens)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from promptcot_pl.models import load_model, load_tokenizer
    from promptcot_pl.models.head import target_logprobs

    torch.manual_seed(0)
    model, tok = load_model(tiny_dir, "float32").eval(), load_tokenizer(tiny_dir)
    G, prompt_len = 4, 6
    lengths = [5, 3, 7, 2, 6, 6, 4, 1]  # 2 problems × G completions
    vocab = model.config.vocab_size
    prompts = torch.randint(5, vocab, (2, prompt_len)).repeat_interleave(G, 0)
    width = max(lengths)
    completion = torch.full((len(lengths), width), tok.pad_token_id)
    completion_mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        completion[i, :n] = torch.randint(5, vocab, (n,))
        completion_mask[i, :n] = 1
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    advantages = group_advantages(rewards, G)
    # old log-probs 0.3 nats off on average, so both clipping bounds are hit
    with torch.no_grad():
        logits = model(torch.cat([prompts, completion], 1)).logits[:, prompt_len - 1:-1]
        now = torch.log_softmax(logits.float(), -1).gather(2, completion[..., None]).squeeze(2)
    old = now + 0.3 * torch.randn_like(now)
    ref = now + 0.2 * torch.randn_like(now)

    config = GRPOConfig(output_dir=str(tmp_path / "trl"), loss_type="dapo", epsilon=0.2, epsilon_high=0.28,
                        beta=beta, temperature=1.0, num_generations=G, per_device_train_batch_size=len(lengths),
                        gradient_accumulation_steps=1, steps_per_generation=1, report_to="none", use_cpu=True,
                        max_completion_length=width, logging_steps=1, bf16=False)  # fp32, as ours
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions), args=config,
                          train_dataset=Dataset.from_dict({"prompt": ["x"] * 8}), processing_class=tok)
    trainer.current_gradient_accumulation_steps = 1
    inputs = {"prompt_ids": prompts, "prompt_mask": torch.ones_like(prompts), "completion_ids": completion,
              "completion_mask": completion_mask, "advantages": advantages, "old_per_token_logps": old,
              "num_items_in_batch": completion_mask.sum()}
    if beta:
        inputs["ref_per_token_logps"] = ref
    model.zero_grad()
    theirs = trainer._compute_loss(trainer.model, inputs)
    theirs.backward()
    trl_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    rows, positions = completion_mask.nonzero(as_tuple=True)
    batch = {"input_ids": torch.cat([prompts, completion], 1),
             "attention_mask": torch.cat([torch.ones_like(prompts), completion_mask], 1)}
    logps = target_logprobs(model, batch, rows, positions + prompt_len - 1, completion[rows, positions])
    mine = grpo_loss(logps, old[rows, positions], advantages[rows], eps_low=0.2, eps_high=0.28,
                     normaliser=completion_mask.sum().float(), ref_logps=ref[rows, positions], beta=beta)
    assert mine.clipped_low > 0 and mine.clipped_high > 0
    mine.loss.backward()
    assert mine.loss.item() == pytest.approx(theirs.item(), abs=1e-5)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == trl_grads.keys()
    for name, grad in grads.items():
        assert torch.allclose(grad, trl_grads[name], atol=1e-5, rtol=1e-4), name


def test_masked_tokens_contribute_nothing_not_even_the_kl():
    """A rank's stand-in group (fewer groups than ranks) is masked out: with β > 0 its KL must not count twice."""
    logps = torch.randn(6, requires_grad=True)
    ref = logps.detach() + 0.5
    out = grpo_loss(logps, logps.detach(), torch.zeros(6), eps_low=0.2, eps_high=0.28, normaliser=6.0, ref_logps=ref,
                    beta=0.1, mask=torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]))
    out.loss.backward()
    assert logps.grad[3:].abs().sum() == 0 and logps.grad[:3].abs().sum() > 0
    gap = ref[:3] - logps.detach()[:3]
    assert out.kl.item() == pytest.approx((torch.exp(gap) - gap - 1).sum().item())
