"""A thinking-style tiny model (ChatML template that opens `<think>` in the generation prompt, as Qwen3-Thinking
and QwQ do): rollouts ending `…</think>\\boxed{3}` are graded, not `broken_think`, and pairs and SFT rows come out
in the release's layout, compared field by field with hand-written release rows. The engine is a scripted stand-in
for the policy (what is under test is what happens to its outputs: format check, grading, pairing, writing)."""

from collections import Counter

import pytest

from promptcot_pl.config import RoleFormat, SamplingConfig, TinyModelConfig
from promptcot_pl.data.encode import encode
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.records import Problem
from promptcot_pl.models import load_tokenizer, tiny_model_dir
from promptcot_pl.stages.selfplay.pairs import PassWindow, build_pairs, released_format
from promptcot_pl.stages.selfplay.rollouts import rollouts
from promptcot_pl.stages.sft.traces import engine_traces, fit_pair
from promptcot_pl.stages.sft.traces import released_format as sft_rows
from promptcot_pl.verify.format import invalid_reason
from tests.conftest import ScriptedEngine

USER = ("<|im_start|>user\nWhat is $1+2$?\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>assistant")
PROBLEM = Problem(id="p", domain="math", problem="What is $1+2$?", answer="3", source="synth")


@pytest.fixture(scope="module")
def thinking_tok(tmp_path_factory):
    cfg = TinyModelConfig(vocab_size=300, hidden_size=64, num_layers=1, num_heads=2, intermediate_size=64,
                          thinking=True)
    path = tiny_model_dir(cfg, ["What is 1+2? Please reason step by step.", "let me see"] * 10,
                          tmp_path_factory.mktemp("thinking"), seed=0)
    return load_tokenizer(path)


def _fmt(tok, thinking=True):
    return PromptFormat("solver", RoleFormat("chat", "release", None, thinking), tok)


def test_the_template_opens_think_and_the_format_check_knows(thinking_tok):
    fmt = _fmt(thinking_tok)
    assert fmt.opens_think and fmt.prompt("math", problem=PROBLEM.problem) == USER + "\n<think>\n"
    assert invalid_reason("let me see\n</think>\n\n$\\boxed{3}$", "math", thinking=True) is None
    assert invalid_reason("let me see\n</think>\n\n$\\boxed{3}$", "math") == "broken_think"  # what C5 found
    assert invalid_reason("still thinking $\\boxed{3}$", "math", thinking=True) == "broken_think"  # never closed
    assert invalid_reason("a</think>b</think>$\\boxed{3}$", "math", thinking=True) == "broken_think"


def test_thinking_rollouts_are_graded_after_the_think_block_and_paired_in_the_release_layout(thinking_tok):
    fmt = _fmt(thinking_tok)
    engine = ScriptedEngine([[
        "let me see\n</think>\n\nThe answer is $\\boxed{3}$.",  # right
        "1+2... maybe \\boxed{3}? no\n</think>\n\n$\\boxed{4}$",  # wrong: the box inside the thoughts is not graded
        "I keep thinking \\boxed{3}",  # never closes: invalid, and 0
        "hmm\n</think>\n\n$\\boxed{5}$",  # wrong
    ]])
    table = rollouts(engine, fmt, [PROBLEM], SamplingConfig(n=4))
    assert engine.prompts == [USER + "\n<think>\n"]
    assert [r.reward for r in table] == [1.0, 0.0, 0.0, 0.0]
    assert [r.meta["invalid"] for r in table] == [None, None, "broken_think", None]
    pairs, _ = build_pairs([PROBLEM], table, PassWindow(0.0, 0.5), fmt, seed=0)
    assert len(pairs) == 1
    (row,) = released_format(pairs, fmt)
    expected = {"source": "PromptCoT-Math", "prompt": USER,
                "chosen": "\n<think>\nlet me see\n</think>\n\nThe answer is $\\boxed{3}$.",
                "rejected": "\n<think>\n" + pairs[0].rejected}
    assert row.keys() == expected.keys()
    for field in expected:
        assert row[field] == expected[field], field
    assert row["rejected"] in ("\n<think>\n1+2... maybe \\boxed{3}? no\n</think>\n\n$\\boxed{4}$",
                               "\n<think>\nhmm\n</think>\n\n$\\boxed{5}$")


def test_sft_rows_from_a_thinking_teacher_in_the_release_layout(thinking_tok):
    teacher, student = _fmt(thinking_tok), _fmt(thinking_tok, thinking=False)
    plain = PromptFormat("solver", RoleFormat("chat", "release"), load_tokenizer_without_think(thinking_tok))
    engine = ScriptedEngine([["let me see\n</think>\n\nSo $\\boxed{3}$."]])
    dropped = Counter()
    (trace,) = engine_traces(engine, teacher, student, [PROBLEM], SamplingConfig(n=1), "scripted", dropped)
    assert trace.completion == "<think>\nlet me see\n</think>\n\nSo $\\boxed{3}$." and not dropped
    # the release's SFT row (SFT-4.8M): prompt up to the assistant header; "\n<think>\n…\n</think>\n\n" + answer
    assert sft_rows([trace], plain) == [{"prompt": USER, "completion": "\n<think>\nlet me see\n</think>\n\nSo "
                                                                      "$\\boxed{3}$."}]
    # a student whose template opens <think> is fitted on the text after the opening tag its prompt holds; one
    # whose template does not learns to open the block itself; either way prompt + target is the same text
    for fmt in (teacher, plain):
        prompt, target = fit_pair(fmt, trace)
        assert prompt + target == USER + "\n<think>\nlet me see\n</think>\n\nSo $\\boxed{3}$."
        ids, boundary = encode(fmt.tokenizer, prompt, target)
        assert fmt.tokenizer.decode(ids[boundary:-1]) == target


def load_tokenizer_without_think(tok):
    """The same tokenizer with the plain ChatML template (a non-thinking student of the same family)."""
    import copy

    from promptcot_pl.models.tokenizer_styles import CHATML

    plain = copy.deepcopy(tok)
    plain.chat_template = CHATML
    return plain
