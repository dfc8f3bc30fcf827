import pytest
import torch

from promptcot_pl.config import TrainerConfig
from promptcot_pl.data.collate import IGNORE
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import prompt_model_example
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.runner.scoring import score_pairs
from tests.conftest import shared_vs_alone
from tests.reference import sequence_logprobs

CPU = TrainerConfig(accelerator="cpu", enable_progress_bar=False)
ONE_ROW = TrainerConfig(accelerator="cpu", enable_progress_bar=False, score_tokens=1)  # a batch per sequence


def _candidates(triples, k=4):
    """K rationale candidates per pair (other pairs' rationales), as the E-step scores them: K targets per prompt."""
    return [prompt_model_example(default_format("prompt_model"), t.concepts, t.level, triples[(i + j) % len(triples)].rationale, t.problem)
            for i, t in enumerate(triples) for j in range(k)]


@pytest.mark.parametrize("share_prefix", [True, False], ids=["prefix-shared", "padded"])
def test_batched_scoring_equals_one_at_a_time(tiny_dir, math_triples, tmp_path, share_prefix):
    pairs = _candidates(math_triples[:8]) + [prompt_model_example(default_format("prompt_model"), t.concepts, t.level, t.rationale, t.problem)
                                             for t in math_triples[8:16]]
    batched, tokens = score_pairs(tiny_dir, pairs, trainer_cfg=CPU, max_length=512, root_dir=tmp_path,
                                  share_prefix=share_prefix)
    single, single_tokens = score_pairs(tiny_dir, pairs, trainer_cfg=ONE_ROW, max_length=512,
                                        root_dir=tmp_path, share_prefix=False)
    assert torch.equal(tokens, single_tokens)
    # fp32 forward passes of different batch shapes round differently: equal to 1e-5 per target token
    # (sums of ~100 tokens × ~8 nats sit at fp32 resolution ~1e-4), and to a relative 1e-6 overall.
    assert torch.allclose(batched / tokens, single / tokens, atol=1e-5, rtol=0)
    assert torch.allclose(batched, single, atol=0, rtol=1e-6)
    # and both equal a plain forward pass of one sequence without padding
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir).eval()
    prompt, target = pairs[5]  # the second candidate of the second pair
    p_ids = tok(prompt).input_ids
    t_ids = tok(prompt + target).input_ids[len(p_ids):] + [tok.eos_token_id]  # joint tokenisation (data/encode.py)
    ids = torch.tensor([p_ids + t_ids])
    labels = ids.clone()
    labels[0, : len(p_ids)] = IGNORE
    with torch.no_grad():
        direct = float(sequence_logprobs(model(input_ids=ids).logits, labels)[0])
    assert abs(float(batched[5]) - direct) < 1e-6 * abs(direct)
    assert int(tokens[5]) == len(t_ids)


def test_prefix_shared_rows_split_by_target_count_and_length(tiny_dir, math_triples):
    from promptcot_pl.data.shared_prefix import group_by_prompt, shared_prefix_batch

    tok = load_tokenizer(tiny_dir)
    pairs = _candidates(math_triples[:3], k=5)
    rows = group_by_prompt(tok, pairs, 512, row_tokens=10_000, max_targets=2)
    assert [len(r.targets) for r in rows] == [2, 2, 1] * 3
    assert sorted(i for r in rows for i in r.indices) == list(range(15))
    one_each = group_by_prompt(tok, pairs, 512, row_tokens=1, max_targets=99)  # a row always takes one target
    assert len(one_each) == 15
    batch = shared_prefix_batch(rows[:2], pad_id=tok.pad_token_id)
    mask = batch["attention_mask"][0, 0]
    n_prompt, n_first = len(rows[0].prompt_ids), len(rows[0].targets[0])
    second = n_prompt + n_first  # first token of the row's second target
    assert mask[second, :n_prompt].all() and not mask[second, n_prompt:second].any()  # prompt yes, sibling no
    assert int(batch["position_ids"][0, second]) == n_prompt
    with pytest.raises(ValueError, match="pair 0 does not fit in 8 tokens"):
        group_by_prompt(tok, pairs, 8, row_tokens=10_000, max_targets=2)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_prefix_shared_rows_equal_one_at_a_time_under_each_attention(tiny_dir, math_triples, attention):
    """eager attention adds the mask to the scores, so a boolean mask would let siblings see each other."""
    from promptcot_pl.data.shared_prefix import shared_prefix_batch
    from promptcot_pl.losses import owner_sums

    tok = load_tokenizer(tiny_dir)
    model = load_model(tiny_dir)
    model.set_attn_implementation(attention)
    pairs = _candidates(math_triples[:3], k=4)
    by_index, alone, rows = shared_vs_alone(model, tok, pairs, 512, max_targets=4)
    assert max(len(r.targets) for r in rows) == 4
    got = torch.tensor([by_index[i] for i in range(len(pairs))])
    assert torch.allclose(got, torch.tensor(alone), atol=1e-4, rtol=1e-6)
    if attention == "eager":  # the check can fail: the raw boolean mask under eager attention leaks
        batch = shared_prefix_batch(rows, tok.pad_token_id)
        with torch.no_grad():
            out = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   position_ids=batch["position_ids"]).last_hidden_state
            logits = model.lm_head(out[batch["score_row"], batch["score_pos"]]).log_softmax(-1)
            leaked = logits.gather(1, batch["score_label"][:, None]).squeeze(1)
            sums, _ = owner_sums(leaked, batch["score_owner"], len(batch["index"]))
        assert not torch.allclose(sums, torch.tensor(list(by_index.values())), atol=1e-3)


def test_share_prefix_false_gives_plain_rows_and_the_same_dpo_logprobs(tiny_dir):
    from promptcot_pl.stages.selfplay.data import encode_preferences, preference_batch
    from promptcot_pl.stages.selfplay.module import pair_logprobs

    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir).eval()
    pairs = [("Problem:\nWhat is 2+2?\nSolution:\n", "It is \\boxed{4}.", "It is \\boxed{5}, surely."),
             ("Problem:\nWhat is 3+3?\nSolution:\n", "\\boxed{6}", "I think the answer is \\boxed{7}.")]
    rows, _ = encode_preferences(tok, pairs, max_length=256)
    shared, plain = preference_batch(rows, tok.pad_token_id), preference_batch(rows, tok.pad_token_id,
                                                                                share_prefix=False)
    assert shared["attention_mask"].dim() == 4 and plain["attention_mask"].dim() == 2
    assert torch.equal(shared["pair_index"], plain["pair_index"])
    with torch.no_grad():
        a, b = pair_logprobs(model, shared), pair_logprobs(model, plain)
    for x, y in zip(a, b):
        assert torch.allclose(x.double(), y.double(), atol=1e-4)
