"""The DPO module on prefix-shared rows: log-probs equal separate forward passes, and precomputed-reference and
frozen-reference modes give the same loss on the same batch."""

import pytest
import torch

from promptcot_pl.config import OptimConfig
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.stages.selfplay.config import DPOConfig
from promptcot_pl.stages.selfplay.data import encode_preferences, preference_batch
from promptcot_pl.stages.selfplay.module import DPOModule, pair_logprobs
from tests.reference import sequence_logprobs

PAIRS = [(f"Problem:\nWhat is {a} + {b}?\nSolution:\n", f"The answer is $\\boxed{{{a + b}}}$.",
          f"Add: {a}+{b}. The answer is $\\boxed{{{a * b + 1}}}$.") for a, b in [(2, 3), (10, 7), (4, 4)]]


def _separate(model, tokenizer, prompt, completion):
    ids = tokenizer(prompt).input_ids
    target = tokenizer(prompt + completion).input_ids[len(ids):] + [tokenizer.eos_token_id]
    x = torch.tensor([ids + target])
    labels = torch.tensor([[-100] * len(ids) + target])
    return sequence_logprobs(model(input_ids=x).logits, labels).item(), len(target)


@pytest.fixture(scope="module")
def setup(tiny_dir):
    tokenizer = load_tokenizer(tiny_dir)
    rows, kept = encode_preferences(tokenizer, PAIRS, max_length=256)
    return tokenizer, rows, kept


def test_prefix_shared_logprobs_equal_separate_forward_passes(tiny_dir, setup):
    tokenizer, rows, kept = setup
    model = load_model(tiny_dir).eval()
    with torch.no_grad():
        chosen, rejected, n_chosen, n_rejected = pair_logprobs(model, preference_batch(rows, tokenizer.pad_token_id))
        for k, (prompt, c, r) in enumerate(PAIRS):
            assert (chosen[k].item(), n_chosen[k].item()) == pytest.approx(_separate(model, tokenizer, prompt, c), abs=1e-4)
            assert (rejected[k].item(), n_rejected[k].item()) == pytest.approx(_separate(model, tokenizer, prompt, r), abs=1e-4)


def test_overlong_pairs_are_left_out(setup):
    tokenizer, _, _ = setup
    long = (PAIRS[0][0], "x " * 400, PAIRS[0][2])
    rows, kept = encode_preferences(tokenizer, [PAIRS[1], long, PAIRS[2]], max_length=128)
    assert kept == [0, 2] and len(rows) == 2


def test_precomputed_and_frozen_reference_give_the_same_loss(tiny_dir, setup):
    tokenizer, rows, _ = setup
    torch.manual_seed(0)
    policy = load_model(tiny_dir)
    with torch.no_grad():  # the policy has moved away from the reference
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for cfg in (DPOConfig(), DPOConfig(loss="ipo"), DPOConfig(label_smoothing=0.2, rpo_weight=0.5)):
        frozen = DPOModule(policy, OptimConfig(), cfg, ref_model=load_model(tiny_dir))
        frozen.model.eval()
        with torch.no_grad():
            ref_c, ref_r, _, _ = pair_logprobs(frozen.ref_model, preference_batch(rows, tokenizer.pad_token_id))
            ref = torch.stack([ref_c, ref_r], dim=1).double()
            loss_frozen, metrics_frozen = frozen.loss(preference_batch(rows, tokenizer.pad_token_id))
            loss_pre, metrics_pre = DPOModule(policy, OptimConfig(), cfg).loss(
                preference_batch(rows, tokenizer.pad_token_id, ref=ref))
        assert loss_pre.item() == pytest.approx(loss_frozen.item(), abs=1e-6)
        assert metrics_pre["rewards_margin"].item() == pytest.approx(metrics_frozen["rewards_margin"].item(), abs=1e-6)
        assert abs(metrics_pre["rewards_margin"].item()) > 1e-4


def test_training_raises_the_margin(tiny_dir, setup, tmp_path):
    import lightning as L

    from promptcot_pl.config import TrainerConfig
    from promptcot_pl.stages.selfplay.data import PreferenceDataModule
    from promptcot_pl.trainer import build_trainer

    tokenizer, rows, _ = setup
    L.seed_everything(0)
    module = DPOModule(load_model(tiny_dir), OptimConfig(lr=1e-3, warmup_ratio=0.0), DPOConfig(reference="frozen"),
                       ref_model=load_model(tiny_dir))
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False), max_epochs=10, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=PreferenceDataModule(rows, tokenizer.pad_token_id, batch_size=3))
    module.model.eval()
    with torch.no_grad():
        _, metrics = module.loss(preference_batch(rows, tokenizer.pad_token_id))
    assert metrics["rewards_margin"].item() > 1.0 and metrics["rewards_accuracy"].item() == 1.0


def _with_attention_dropout(tiny_dir, p: float):
    model = load_model(tiny_dir)
    model.config.attention_dropout = p
    for module in model.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = p
    return model


@pytest.mark.parametrize("disable_dropout", [True, False])
def test_the_policy_trains_without_dropout_unless_asked(tiny_dir, setup, tmp_path, disable_dropout):
    """the references are scored without dropout, so a policy trained with it has a margin of dropout
    noise at step 0. With dpo.disable_dropout (the default) the first step sees margin 0 and loss log 2 exactly, and
    the model stays in eval mode through Lightning's fit."""
    import math

    import lightning as L

    from promptcot_pl.config import TrainerConfig
    from promptcot_pl.stages.selfplay.data import PreferenceDataModule
    from promptcot_pl.trainer import build_trainer

    tokenizer, rows, _ = setup
    L.seed_everything(0)
    model = _with_attention_dropout(tiny_dir, 0.5)
    with torch.no_grad():
        ref_c, ref_r, _, _ = pair_logprobs(model.eval(), preference_batch(rows, tokenizer.pad_token_id))
    ref = torch.stack([ref_c, ref_r], dim=1).double()
    seen: list[tuple[bool, float, float]] = []

    class Probe(DPOModule):
        def training_step(self, batch, batch_idx):
            loss, metrics = self.loss(batch)
            seen.append((self.model.training, metrics["rewards_margin"].item(), metrics["loss"].item()))
            return loss

    module = Probe(model, OptimConfig(lr=0.0, warmup_ratio=0.0), DPOConfig(disable_dropout=disable_dropout))
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False), max_epochs=2, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=PreferenceDataModule(rows, tokenizer.pad_token_id, batch_size=3, ref=ref))
    assert len(seen) == 2
    if disable_dropout:
        assert all(not training and margin == pytest.approx(0.0, abs=1e-6) and loss == pytest.approx(math.log(2), abs=1e-6)
                   for training, margin, loss in seen)
    else:
        assert all(training and abs(margin) > 1e-3 for training, margin, _ in seen)


def _sampled_accuracy(model, tokenizer, prompt: str, right: str, n: int = 200) -> float:
    """Share of n samples at temperature 1 that give the right answer."""
    torch.manual_seed(1)
    ids = torch.tensor([tokenizer(prompt).input_ids])
    with torch.no_grad():
        out = model.eval().generate(ids.repeat(n, 1), do_sample=True, temperature=1.0, top_k=0, max_new_tokens=12,
                                    pad_token_id=tokenizer.pad_token_id)
    return sum(tokenizer.decode(row[ids.shape[1]:]).startswith(right) for row in out) / n


def test_dpo_raises_the_sampled_accuracy_of_a_policy_choosing_between_two_answers(tiny_dir, tmp_path):
    """Not only the implicit margin: a policy that answers 7 or 8 about equally often answers 7 far more often
    after DPO on (7 chosen, 8 rejected) pairs, when sampled. With the RPO term (the chosen answers' NLL): plain
    sigmoid DPO on this near-identical pair at the same lr and steps pushes the mass of "8" onto other tokens
    and the sampled accuracy falls (0.535 → 0.27 here), likelihood displacement (docs/method/selfplay.md)."""
    import lightning as L

    from promptcot_pl.config import TrainerConfig
    from promptcot_pl.modules import WeightedNLLModule
    from promptcot_pl.modules.data import PairDataModule
    from promptcot_pl.stages.selfplay.data import PreferenceDataModule
    from promptcot_pl.trainer import build_trainer

    L.seed_everything(0, verbose=False)
    tokenizer = load_tokenizer(tiny_dir)
    prompt, right, wrong = "Problem:\nWhat is 3 + 4?\nSolution:\n", "The answer is 7.", "The answer is 8."
    cpu = TrainerConfig(enable_progress_bar=False, accelerator="cpu", log_every_n_steps=1)
    # a policy split between the two answers: fitted on both equally often
    sft = WeightedNLLModule(load_model(tiny_dir), OptimConfig(lr=1e-2, warmup_ratio=0.1))
    build_trainer(cpu, max_epochs=10, default_root_dir=tmp_path / "sft").fit(
        sft, datamodule=PairDataModule(tokenizer, [(prompt, right), (prompt, wrong)] * 16, [(prompt, right)],
                                       batch_size=8, max_length=64))
    before = _sampled_accuracy(sft.model, tokenizer, prompt, "The answer is 7")
    assert 0.2 <= before <= 0.8, before

    rows, _ = encode_preferences(tokenizer, [(prompt, right, wrong)] * 16, max_length=64)
    with torch.no_grad():
        chosen, rejected, _, _ = pair_logprobs(sft.model.eval(), preference_batch(rows, tokenizer.pad_token_id))
    dpo = DPOModule(sft.model, OptimConfig(lr=1e-3, warmup_ratio=0.1), DPOConfig(beta=0.1, rpo_weight=1.0))
    build_trainer(cpu, max_epochs=10, default_root_dir=tmp_path / "dpo").fit(
        dpo, datamodule=PreferenceDataModule(rows, tokenizer.pad_token_id, 4, ref=torch.stack([chosen, rejected], 1)))
    after = _sampled_accuracy(dpo.model, tokenizer, prompt, "The answer is 7")
    assert after >= before + 0.3, (before, after)
