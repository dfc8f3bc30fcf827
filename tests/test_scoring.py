import torch

from promptcot_pl.config.schema import TrainerConfig
from promptcot_pl.data.collate import IGNORE
from promptcot_pl.data.prompts import prompt_model_example
from promptcot_pl.losses import sequence_logprobs
from promptcot_pl.models import load_model, load_tokenizer
from promptcot_pl.recipes.scoring import score_pairs

CPU = TrainerConfig(accelerator="cpu", enable_progress_bar=False)


def test_batched_scoring_equals_one_at_a_time(tiny_dir, math_triples, tmp_path):
    pairs = [prompt_model_example(t.concepts, t.level, t.rationale, t.problem) for t in math_triples[:24]]
    batched, tokens = score_pairs(tiny_dir, pairs, trainer_cfg=CPU, batch_size=16, max_length=512, root_dir=tmp_path)
    single, _ = score_pairs(tiny_dir, pairs, trainer_cfg=CPU, batch_size=1, max_length=512, root_dir=tmp_path)
    # fp32 forward passes of different batch shapes round differently: equal to 1e-5 per target token
    # (sums of ~100 tokens × ~8 nats sit at fp32 resolution ~1e-4), and to a relative 1e-6 overall.
    assert torch.allclose(batched / tokens, single / tokens, atol=1e-5, rtol=0)
    assert torch.allclose(batched, single, atol=0, rtol=1e-6)
    # and both equal a plain forward pass of one sequence without padding
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir).eval()
    prompt, target = pairs[5]
    p_ids, t_ids = tok(prompt).input_ids, tok(target, add_special_tokens=False).input_ids + [tok.eos_token_id]
    ids = torch.tensor([p_ids + t_ids])
    labels = ids.clone()
    labels[0, : len(p_ids)] = IGNORE
    with torch.no_grad():
        direct = float(sequence_logprobs(model(input_ids=ids).logits, labels)[0])
    assert abs(float(batched[5]) - direct) < 1e-4
    assert int(tokens[5]) == len(t_ids)
