import pytest
import torch

from promptcot_pl.config.schema import TrainerConfig
from promptcot_pl.data.collate import IGNORE
from promptcot_pl.data.formats import default_format
from promptcot_pl.data.prompts import prompt_model_example
from promptcot_pl.losses import sequence_logprobs
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.recipes.scoring import score_pairs

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
