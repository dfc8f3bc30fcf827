"""PromptCoT pair construction on a hand-made rollout table: window edges, unscorable and invalid rollouts,
min(#pass, #fail) pairs per problem."""

import pytest

from promptcot_pl.config import RoleFormat
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.records import Problem, Rollout
from promptcot_pl.stages.selfplay.pairs import PassWindow, build_pairs, released_format, summarize

OURS = PromptFormat("solver", RoleFormat("raw", "ours"))  # "Problem:\n…\nSolution:\n", no template


def _table(spec: dict[str, list[tuple[float | None, bool]]]):
    """problem id → [(reward, valid), ...]"""
    problems = [Problem(id=pid, domain="math", problem=f"What is {pid}?", answer="1") for pid in spec]
    rollouts = [Rollout(problem_id=pid, index=i, text=f"{pid}-{i}", valid=valid, reward=reward)
                for pid, rows in spec.items() for i, (reward, valid) in enumerate(rows)]
    return problems, rollouts


PASS, FAIL, BAD_PASS, BAD_FAIL, NONE = (1.0, True), (0.0, True), (1.0, False), (0.0, False), (None, True)
TABLE = {
    "quarter": [PASS] * 2 + [FAIL] * 4 + [BAD_FAIL] * 2,  # 2/8: kept, min(2 valid pass, 4 valid fail) = 2
    "half": [PASS] * 3 + [BAD_PASS] + [FAIL] * 4,  # exactly 1/2: kept by (0, 1/2], min(3, 4) = 3
    "zero": [FAIL] * 8,  # 0: below (0, ...
    "all": [PASS] * 8,  # 1: above
    "unscorable": [NONE] * 8,
    "none_left_out": [PASS] * 3 + [FAIL] + [NONE] * 4,  # 3/4 (None left out, not 3/8): above
    "only_invalid_pass": [BAD_PASS] + [FAIL] * 7,  # 1/8 in window, but no valid chosen
    "mostly_unscorable": [PASS, FAIL] + [NONE] * 6,  # 1/2 from 2 scored rollouts: too few with min_scored=4
}


def test_window_edges_invalid_and_unscorable_rollouts():
    problems, rollouts = _table(TABLE)
    pairs, outcomes = build_pairs(problems, rollouts, PassWindow(0.0, 0.5), OURS, seed=0, min_scored=4)
    status = {o.problem_id: (o.status, o.pairs) for o in outcomes}
    assert status == {"quarter": ("kept", 2), "half": ("kept", 3), "zero": ("below_window", 0),
                      "all": ("above_window", 0), "unscorable": ("unscorable", 0),
                      "none_left_out": ("above_window", 0), "only_invalid_pass": ("no_valid_pair", 0),
                      "mostly_unscorable": ("too_few_scored", 0)}
    rate = {o.problem_id: o.pass_rate for o in outcomes}
    assert rate["none_left_out"] == 0.75 and rate["unscorable"] is None and rate["half"] == 0.5
    by_text = {r.text: r for r in rollouts}
    for pair in pairs:
        chosen, rejected = by_text[pair.chosen], by_text[pair.rejected]
        assert chosen.valid and chosen.reward == 1.0 and rejected.valid and rejected.reward == 0.0
        assert chosen.problem_id == rejected.problem_id == pair.problem_id
        assert pair.prompt == "Problem:\nWhat is %s?\nSolution:\n" % pair.problem_id
    used = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    assert len(used) == len(set(used))  # every rollout in at most one pair
    summary = summarize(outcomes)
    assert summary["pairs"] == 5 and summary["problems_kept"] == 2 and summary["rollouts_unscorable"] == 18
    assert summary["rollouts_invalid"] == 4
    assert released_format(pairs, OURS)[0].keys() == {"source", "prompt", "chosen", "rejected"}


def test_two_scored_rollouts_make_a_rate_when_allowed():
    problems, rollouts = _table({"mostly_unscorable": TABLE["mostly_unscorable"]})
    pairs, outcomes = build_pairs(problems, rollouts, PassWindow(0.0, 0.5), OURS, min_scored=2)
    assert outcomes[0].status == "kept" and outcomes[0].pass_rate == 0.5 and len(pairs) == 1


def test_the_papers_open_window_drops_exactly_one_half_and_an_inclusive_low_edge_keeps_zero():
    problems, rollouts = _table(TABLE)
    _, outcomes = build_pairs(problems, rollouts, PassWindow(0.0, 0.5, high_inclusive=False), OURS)
    assert {o.problem_id: o.status for o in outcomes}["half"] == "above_window"
    _, outcomes = build_pairs(problems, rollouts, PassWindow(0.0, 0.5, low_inclusive=True), OURS)
    assert {o.problem_id: o.status for o in outcomes}["zero"] == "no_valid_pair"  # in window, nothing passes


def test_pairs_are_reproducible_per_seed():
    problems, rollouts = _table(TABLE)
    first, _ = build_pairs(problems, rollouts, PassWindow(), OURS, seed=1)
    again, _ = build_pairs(problems, rollouts, PassWindow(), OURS, seed=1)
    assert first == again
    other = [build_pairs(problems, rollouts, PassWindow(), OURS, seed=s)[0] for s in range(2, 8)]
    assert any(o != first for o in other)


def test_step_level_pairs_end_after_the_first_differing_step():
    """A hand-made pair of column-arithmetic traces that slip at step 2: both completions end with step 2, so
    DPO compares the slip with the right step and not the correct arithmetic done on a wrong total after it."""
    from promptcot_pl.stages.selfplay.data import first_step_cut

    chosen = "Step 1: 12 + 5 = 17\nStep 2: 17 × 2 = 34\nStep 3: 34 − 4 = 30\nThe answer is 30.<eos>"
    rejected = "Step 1: 12 + 5 = 17\nStep 2: 17 × 2 = 36\nStep 3: 36 − 4 = 32\nThe answer is 32.<eos>"
    chars = lambda text: [ord(c) for c in text.replace("<eos>", "\0")]  # noqa: E731 (one id per character)
    ends = lambda i: i in (ord("\n"), 0)  # noqa: E731
    c, r = first_step_cut(chars(chosen), chars(rejected), ends)
    assert "".join(map(chr, c)) == "Step 1: 12 + 5 = 17\nStep 2: 17 × 2 = 34\n"
    assert "".join(map(chr, r)) == "Step 1: 12 + 5 = 17\nStep 2: 17 × 2 = 36\n"
    # a slip in the last step keeps the EOS; a completion with no step end after the slip is kept whole
    c, r = first_step_cut(chars("A\nB = 1<eos>"), chars("A\nB = 2<eos>"), ends)
    assert c[-1] == 0 and r[-1] == 0 and len(c) == len(r) == 8
    c, r = first_step_cut(chars("A\nB = 1"), chars("A\nB = 22\nC"), ends)
    assert "".join(map(chr, c)) == "A\nB = 1" and "".join(map(chr, r)) == "A\nB = 22\n"


def test_step_level_rows_hold_the_cut_completions(tiny_dir):
    from promptcot_pl.models import load_tokenizer
    from promptcot_pl.stages.selfplay.data import encode_preferences

    tok = load_tokenizer(tiny_dir)
    prompt = "Problem:\nWhat is 12 + 5, times 2?\nSolution:\n"
    pair = (prompt, "12 + 5 = 17\n17 * 2 = 34\nThe answer is 34.", "12 + 5 = 17\n17 * 2 = 36\nThe answer is 36.")
    (whole,), _ = encode_preferences(tok, [pair], 256)
    (step,), kept = encode_preferences(tok, [pair], 256, step_level=True)
    assert kept == [0] and step.prompt_ids == whole.prompt_ids
    assert [tok.decode(t) for t in step.targets] == ["12 + 5 = 17\n17 * 2 = 34\n", "12 + 5 = 17\n17 * 2 = 36\n"]
    assert whole.targets[0][-1] == tok.eos_token_id and len(whole.targets[0]) > len(step.targets[0])


def test_the_round_end_summary_shows_likelihood_displacement():
    import torch

    from promptcot_pl.losses.dpo import pair_summary

    ref = torch.tensor([[-10.0, -12.0], [-20.0, -18.0]])
    after = torch.tensor([[-11.0, -16.0], [-22.0, -21.0]])  # both fall, the rejected faster
    s = pair_summary(ref, after, torch.tensor([[10, 12], [20, 18]]), beta=0.1)
    assert s["logps_chosen_change"] == -1.5 and s["logps_rejected_change"] == -3.5
    assert s["rewards_accuracy"] == 1.0 and s["rewards_margin"] == pytest.approx(0.1 * (3 + 1) / 2)
    assert s["logratio_per_token_chosen"] == pytest.approx((-0.1 - 0.1) / 2)
