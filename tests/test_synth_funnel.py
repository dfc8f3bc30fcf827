"""The synthesis funnel on hand-made model outputs: every drop is counted under its reason, survivors carry
provenance, and the counts add up."""


from promptcot_pl.data.filters import NgramIndex
from promptcot_pl.data.prompts import render_marked
from promptcot_pl.experiment import ExperimentConfig
from promptcot_pl.runner.context import StageContext
from promptcot_pl.stages.synth.loop import FUNNEL, _filter

SEED = ["What is the sum of the digits of $7^{12}$?"]
EVAL = ["Let $r$ and $s$ be the roots of $x^{2} + 7 x = 0$. Find $r^2+s^2$ without solving the equation first."]
PROBLEMS = [
    ("Use 48 and 18.", "Let $a=48$ and $b=18$. Find the sum of their greatest common divisor and least common multiple."),
    ("Same again.", "Let $a=48$ and $b=18$. Find the sum of their greatest common divisor and least common multiple."),
    ("Reworded.", "Let $a = 48$ and $b = 18$. Compute the sum of their greatest common divisor and least common multiple."),
    ("Memorised.", SEED[0]),
    ("A proof.", "Prove that there are infinitely many primes of the form 4k+3."),
    ("Copied.", EVAL[0]),
    ("Fine.", "A geometric sequence has first term $3$ and common ratio $2$. Find the sum of its first 6 terms."),
]


def test_funnel_counts_every_drop_with_its_reason(tmp_path):
    cfg = ExperimentConfig()
    cfg.synth.near_duplicate_threshold = 0.7
    ctx = StageContext(cfg=cfg, run_dir=tmp_path, stage_dir=tmp_path / "synth", tracker=None, run_id=None)
    generated = [{"set": i % 2, "sample": i, "text": render_marked(z, x)} for i, (z, x) in enumerate(PROBLEMS)]
    generated.append({"set": 0, "sample": 99, "text": "<!-- BEGIN RATIONALE -->\nno problem block"})
    sets = [(["gcd", "lcm"], "AMC 8"), (["geometric sequences"], "AIME")]
    problems, funnel, dropped = _filter(ctx, generated, sets, SEED, NgramIndex(EVAL, n=13))
    assert dropped == {"unparsed": 1, "duplicate": 1, "seed_copy": 1, "near_duplicate": 1, "proof_only": 1,
                       "contaminated": 1}
    assert [funnel[k] for k in FUNNEL[:-1]] == [8, 7, 5, 4, 3, 2]
    assert [p.problem for p in problems] == [PROBLEMS[0][1], PROBLEMS[6][1]]
    assert problems[1].rationale == "Fine." and problems[1].concepts == ["gcd", "lcm"]
    assert problems[1].meta == {"concept_set": 0, "sample": 6, "seed": cfg.seed}
    assert problems[0].id.startswith("synth-math-") and problems[0].source == "synth"
