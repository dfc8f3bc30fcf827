"""Prompt formats and the one tokenisation rule on three offline tokenizer styles built by the project:
ChatML with no BOS and two EOS ids (Qwen-like), BOS + pad = EOS (Llama-3-like), and SentencePiece-style with a
"▁" prefix (Llama-2/Mistral-like). Every role's prompt is compared to a hand-written string (the release's exact
texts included); `encode` round-trips and is what generation continues from."""

import pytest
import torch

from promptcot_pl.config import RoleFormat, TinyModelConfig
from promptcot_pl.data.encode import encode, encode_prompt
from promptcot_pl.data.formats import (
    PromptFormat,
    default_format,
    release_layout,
    unwrap_problem,
    user_message,
)
from promptcot_pl.data.prompts import prompt_model_prompt, rationale_model_example, solver_prompt
from promptcot_pl.models import load_model, load_tokenizer, stop_ids, tiny_model_dir

CORPUS = ["Find the remainder when $3^{10}$ is divided by $7$. Please reason step by step, and put your final "
          "answer within \\boxed{}.", "Solution: The answer is 42.", "Foundational Concepts:\n1. gcd\n2. lcm",
          "[INST] What is 2+2? [/INST] It is 4."] * 10
STYLES = ("chatml", "llama3", "sentencepiece")
PROBLEM = "What is $2+3$?"
MATH = f"{PROBLEM}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
CHAT = {  # the three families' own renderings of one user turn + generation prompt
    "chatml": "<|im_start|>user\n{m}<|im_end|>\n<|im_start|>assistant\n",
    "llama3": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{m}<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "sentencepiece": "<s>[INST] {m} [/INST]",
}
CODE_WRAPPER = (
    "You will be given a question (problem specification) and will generate a correct Python program that matches "
    "the specification and passes all tests.\n\nPrint the sum.\n\nRead the inputs from stdin solve the problem and "
    "write the answer to stdout (do not directly test on the sample inputs). Enclose your code within delimiters as "
    "follows. Ensure that when the python program runs, it reads the inputs, runs the algorithm and writes output "
    "to STDOUT.\n```python\n# YOUR CODE HERE\n```\n\n")


@pytest.fixture(scope="module", params=STYLES)
def styled(request, tmp_path_factory):
    """(style, model dir) of a tiny model whose tokenizer has the style's conventions."""
    cfg = TinyModelConfig(vocab_size=320, hidden_size=64, num_layers=1, num_heads=2, intermediate_size=64,
                          style=request.param)
    return request.param, tiny_model_dir(cfg, CORPUS, tmp_path_factory.mktemp(request.param), seed=0)


def test_tokenizer_styles_have_their_families_conventions(styled):
    style, path = styled
    tok = load_tokenizer(path)
    expect = {"chatml": ("<|im_end|>", None, "<|endoftext|>", ["<|im_end|>", "<|endoftext|>"]),
              "llama3": ("<|eot_id|>", "<|begin_of_text|>", "<|eot_id|>", ["<|eot_id|>", "<|end_of_text|>"]),
              "sentencepiece": ("</s>", "<s>", "</s>", ["</s>"])}[style]
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == expect[:3]  # pad = EOS once loaded (Llama)
    assert stop_ids(path, tok) == tok.convert_tokens_to_ids(expect[3])


def test_every_role_renders_as_written(styled):
    style, path = styled
    tok = load_tokenizer(path)
    chat = CHAT[style]
    solver = default_format("solver", tok)
    assert solver_prompt(solver, PROBLEM, "math") == chat.format(m=MATH)
    assert solver_prompt(solver, "Print the sum.", "code") == chat.format(m=CODE_WRAPPER if style != "llama3"
                                                                          else CODE_WRAPPER.strip())  # it trims
    # p_θ: raw, the release's generation prompt, no trailing newline (the completion starts with the markers)
    assert prompt_model_prompt(default_format("prompt_model", tok), ["gcd", "lcm"], "AIME", "math") == (
        "Given foundational concepts and difficulty level, identify connections and develop a question that "
        "integrates these concepts with appropriate complexity.\n\nFoundational Concepts:\n1. gcd\n2. lcm\n\n"
        "Difficulty Level: AIME")
    assert prompt_model_prompt(default_format("prompt_model", tok), ["stacks"], "codeforces", "code") == (
        "Given the foundational programming concepts and specified difficulty level, identify connections among "
        "these concepts and develop an olympiad-level coding problem that integrates them with appropriate "
        "complexity.\n\nFoundational Programming Concepts:\n1. stacks\n\nDifficulty Level: codeforces")
    assert rationale_model_example(default_format("rationale_model", tok), ["gcd"], "AIME", "P?", "z") == (
        "Foundational Concepts:\n1. gcd\n\nDifficulty Level: AIME\nProblem:\nP?\nExplain how this problem was "
        "designed.\n", "z")
    writer = default_format("test_writer", tok)
    assert writer.prompt("code", problem="Print the sum.").startswith(chat.split("{m}")[0] + "Write one test case")
    annotator = default_format("annotator", tok)
    text = annotator.prompt("any", text_role="annotate_concepts", problem=PROBLEM, num_concepts="5", levels="A, B")
    assert text.startswith(chat.split("{m}")[0] + "As an expert in educational assessment") and "5 foundational" in text
    # ours, raw, and a system turn
    ours = PromptFormat("solver", RoleFormat("raw", "ours"), tok)
    assert solver_prompt(ours, PROBLEM) == f"Problem:\n{PROBLEM}\nSolution:\n"
    if style == "chatml":
        system = PromptFormat("solver", RoleFormat("chat", "release", "Be brief."), tok)
        assert solver_prompt(system, PROBLEM) == "<|im_start|>system\nBe brief.<|im_end|>\n" + chat.format(m=MATH)


def test_encode_round_trips_once_bos_and_is_what_generation_continues_from(styled):
    style, path = styled
    tok = load_tokenizer(path)
    for prompt in (solver_prompt(default_format("solver", tok), PROBLEM), f"Problem:\n{PROBLEM}\nSolution:\n"):
        target = "The answer is $\\boxed{5}$."
        ids, boundary = encode(tok, prompt, target)
        assert ids[:boundary] == encode_prompt(tok, prompt)
        assert tok.decode(ids[boundary:-1]) == target and ids[-1] == tok.eos_token_id
        if tok.bos_token_id is not None:
            assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id  # the template's BOS, not two
        if style == "sentencepiece":  # encoding the target alone would give it a "▁" prefix
            assert tok(target, add_special_tokens=False).input_ids != ids[boundary:-1]
    # generation continues from exactly encode's prompt ids (a second BOS would change every logit)
    from promptcot_pl.config import EngineConfig, SamplingConfig
    from promptcot_pl.generation import build_engine

    prompt = solver_prompt(default_format("solver", tok), PROBLEM)
    engine = build_engine(EngineConfig(backend="hf", device="cpu", progress=False), path)
    (completion,) = engine.generate([prompt], SamplingConfig(temperature=0, max_new_tokens=6))[0]
    model = load_model(path).eval()
    ids = torch.tensor([encode(tok, prompt, "")[0][:-1]])
    with torch.no_grad():
        for token in completion.token_ids:
            assert int(model(input_ids=ids).logits[0, -1].argmax()) == token
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)


def test_a_straddling_token_moves_the_boundary_not_the_text(styled):
    """When a token spans the seam, the boundary is located by offsets and the ids still decode to the text."""
    _, path = styled
    tok = load_tokenizer(path)
    ids, boundary = encode(tok, "The answ", "er is 42", eos=False)
    assert tok.decode(ids, skip_special_tokens=True) == "The answer is 42"
    assert 0 < boundary <= len(ids)


def test_release_layout_and_unwrapping():
    qwen3 = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert release_layout(qwen3, "hmm\n</think>\n\n3", opens_think=True, thinking=True) == (
        "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant", "\n<think>\nhmm\n</think>\n\n3")
    assert release_layout("<|im_start|>assistant\n", "<think>\nx</think>y", opens_think=False, thinking=True) == (
        "<|im_start|>assistant", "\n<think>\nx</think>y")
    assert release_layout("<|im_start|>assistant\n", "y", opens_think=False, thinking=False) == (
        "<|im_start|>assistant", "\ny")
    rendered = CHAT["chatml"].format(m=MATH) + "<think>\n"
    assert unwrap_problem(user_message(rendered), "math") == PROBLEM
    assert unwrap_problem(user_message(CHAT["chatml"].format(m=CODE_WRAPPER)), "code") == "Print the sum."
    assert unwrap_problem("A bare problem.", "math") == "A bare problem."


def test_a_chat_role_without_a_template_is_refused_naming_the_key(tmp_path, tiny_dir):
    tok = load_tokenizer(tiny_dir)
    tok.chat_template = None
    with pytest.raises(ValueError, match=r"prompts.solver.style: 'chat', but the tokenizer"):
        PromptFormat("solver", RoleFormat("chat", "release"), tok)
