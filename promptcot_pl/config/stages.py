"""The settings of each pipeline stage, one dataclass per stage (SPEC §3–6). (Part of the typed experiment
configuration; `schema.py` composes it.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from promptcot_pl.config.common import OptimConfig, SamplingConfig


@dataclass
class AnnotateConfig:
    """Cold-start annotation (SPEC §3, RELEASE_FORMATS §2): a corpus of problems → concepts, level and rationale
    from annotator models → the triples `coldstart` fits and the concept bank synthesis samples from."""

    # JSONL corpora: rows with "problem" and "answer" | "solution" | "tests", or the release's eval files
    corpus: list[str] = field(default_factory=list)
    # Annotator models, each an HF path or name, "tiny" (the offline tiny model, untrained: its answers rarely
    # parse) or "oracle" (the built-in math domain's reference annotator). Problems are dealt out in turn; one
    # whose annotation fails to parse is retried by the next annotator (every failure counted by reason).
    annotators: list[str] = field(default_factory=lambda: ["oracle"])
    num_concepts: int = 5  # concepts asked for per problem (the paper: 5)
    levels: list[str] = field(default_factory=lambda: ["AMC 8", "AMC 12", "AIME"])  # the levels an annotator picks from
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=1, temperature=0.0, max_new_tokens=512))
    max_items: int | None = None  # at most this many corpus rows (None: all)


@dataclass
class ColdStartConfig:
    """Maximum-likelihood fit of q_φ on (c,x)→z and p_θ on c→(z,x) (SPEC §3, paper: lr 2e-5, batch 16, 2 epochs)."""

    epochs: int = 2
    batch_size: int = 16
    # Held-out NLL is measured on at most this many held-out triples (all when None).
    eval_limit: int | None = None
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-5))


@dataclass
class EMConfig:
    """The rationale/prompt EM loop (SPEC §3). These are the "EM hyperparameters" sweeps explore."""

    iterations: int = 3
    k: int = 8  # rationales sampled from q_φ per (c, x) pair
    pairs_per_iteration: int | None = None  # a fresh random subset of training pairs each iteration (None: all)
    heldout_limit: int | None = 200  # held-out pairs for the bound (None: all)
    selection: Literal["best", "softmax"] = "best"  # best: argmax_k R (the paper); softmax: w ∝ exp((R − β log q)/τ)
    tau: float = 1.0
    beta: float = 0.0
    length_normalize: bool = False  # divide R and log q by their token counts before selecting
    e_step: bool = True  # false: the ablation — rationales decoded once from the cold-start q_φ, then frozen
    z_mode: Literal["greedy", "sample", "best"] = "greedy"  # how z̃ for the M-step comes from q_φ
    rationale_temperature: float = 1.0  # sampling z_k ~ q_φ in the E-step
    # The held-out IWAE/ELBO always take eval_k samples at temperature 1, top-p 1 (the q whose log q is scored),
    # whatever k and rationale_temperature: a bound, and comparable across runs that sweep them (REVIEW C3).
    eval_k: int = 16
    z_temperature: float = 1.0  # z̃ when z_mode = sample
    max_rationale_tokens: int = 128
    epochs_e: int = 1
    epochs_m: int = 1
    batch_size: int = 16
    e_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-6))
    m_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-6))
    # Also fit p_θ on c → x only (no rationale) and report its held-out NLL of x for comparison.
    no_rationale_baseline: bool = True
    # Also run the e_step=false ablation from the same cold start (under em/frozen/, metrics em_frozen/…).
    compare_frozen: bool = False


@dataclass
class SolverConfig:
    """The fixed solver x → solution (SPEC §7): difficulty analyses, majority-vote references for synthesized
    math problems, later the self-play policy. `tiny`: fit the offline tiny model on the seed's worked solutions
    (stage `solver`); anything else is a Hugging Face model path or name, used untrained."""

    path: str = "tiny"
    epochs: int = 3
    batch_size: int = 16
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))


@dataclass
class SynthConfig:
    """Problem synthesis from p_θ (SPEC §4): concept sampler, generation, filters, verifiable targets."""

    n_concept_sets: int = 200
    concepts_per_set: int = 5
    concept_temperature: float = 0.2  # PromptCoT 1.0's sampler temperature
    cooccurrence_weight: float = 1.0  # score = w_co · Σ co-occurrence counts + w_sim · cos(e_c, mean chosen)
    similarity_weight: float = 1.0
    levels: dict[str, float] | None = None  # level → weight (None: the seed's level frequencies)
    embedding_model: str = "all-MiniLM-L6-v2"  # the offline packaged copy; or a sentence-transformers path
    # concept sets from a file instead of the sampler: the release's concept rows (`foundational_concepts` or
    # `concepts`, `level`, or a rendered `prompt`) or stage annotate's concept_sets.jsonl; at most n_concept_sets
    concepts_path: str | None = None
    # (z, x) ~ p_θ(·|c): n samples per concept set (the paper: many seeds, temperature 0.8)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, temperature=0.8, max_new_tokens=512))
    generators: list[str] = field(default_factory=lambda: ["em", "coldstart"])  # whose p_θ synthesizes
    near_duplicate_threshold: float = 0.2  # MinHash-LSH Jaccard over content words (the paper: 0.2)
    num_perm: int = 128
    decontamination_ngram: int = 13  # word n-gram overlap with an evaluation problem drops a problem
    eval_sets: list[str] = field(default_factory=list)  # JSONL files with "problem"; the held-out split always counts
    min_words: int = 5  # shorter problems are degenerate
    # math: "vote" — the majority of the solver's reference_votes samples (the paper) — or "oracle": the built-in
    # worlds' reference solver (`domains/math_oracle.py`; statements it cannot read are dropped, counted)
    references: Literal["vote", "oracle"] = "vote"
    # math: majority vote of the solver over reference_votes samples; code: test_calls test-writer calls
    reference_votes: int = 8
    reference_temperature: float = 0.7
    reference_max_new_tokens: int = 256
    min_confidence: float = 0.5  # the majority's share of the votes a reference answer needs
    test_calls: int = 4
    test_writer: str | None = None  # code: the model that writes unit tests (None: the solver); HF path or name
    released_format: bool = False  # also write problems_released.jsonl (PromptCoT problem-generation rows)


@dataclass
class AnalyzeConfig:
    """Difficulty and diversity of the problem sets (SPEC §7)."""

    max_problems: int = 200  # per set
    n_samples: int = 4  # solver samples per problem (the paper: 16)
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 256


@dataclass
class DPOConfig:
    """The preference objective of self-play (`losses/dpo.py`)."""

    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0  # > 0: conservative DPO (sigmoid only)
    rpo_weight: float = 0.0  # weight of the chosen completions' NLL per token (RPO); 0: off
    # "precomputed": reference log-probs from one batched no-grad pass per round (one model in memory while
    # training); "frozen": a frozen copy of the round's starting policy scores every batch.
    reference: Literal["precomputed", "frozen"] = "precomputed"


@dataclass
class SelfPlayConfig:
    """Self-play preference optimisation (SPEC §5): rollouts on synthesized problems, verifiable rewards, pairs
    from problems whose pass rate lies in the window, DPO; `rounds` times, each round's reference being the policy
    at its start. The policy starts from the solver (stage `solver`)."""

    rounds: int = 2
    # What the policy practises on: the synthesized problems (stage `synth`), or the seed's training problems —
    # the baseline the paper compares synthesized prompts with.
    problems: Literal["synth", "seed"] = "synth"
    max_problems: int = 200  # problems drawn per round (a different draw each round)
    rollouts: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=8, temperature=1.2, max_new_tokens=256))
    # Keep problems whose pass rate lies in (pass_low, pass_high]: the release keeps exactly 1/2, the paper's text
    # says "< 1/2" (pass_high_inclusive: false).
    pass_low: float = 0.0
    pass_high: float = 0.5
    pass_low_inclusive: bool = False
    pass_high_inclusive: bool = True
    # A problem needs this many scorable rollouts (reward not None) for a pass rate; fewer: left out, counted
    # (None: half of rollouts.n, rounded up)
    min_scored_rollouts: int | None = None
    dpo: DPOConfig = field(default_factory=DPOConfig)
    epochs: int = 1
    batch_size: int = 16  # pairs per optimizer step (the paper: 16)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, warmup_ratio=0.1))  # the paper: 1e-6
    # held-out accuracy (the seed's held-out problems, ground-truth answers) before and after every round
    eval: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, temperature=0.6, top_p=0.95))
    eval_limit: int = 200

    @property
    def min_scored(self) -> int:
        return self.min_scored_rollouts or -(-self.rollouts.n // 2)


@dataclass
class SFTConfig:
    """The SFT regime (SPEC §6): a student learns from a teacher's traces on prompts; held-out accuracy of the
    student before and after (the seed's held-out problems, ground-truth answers)."""

    # "oracle": the built-in domain's reference solver (math); "solver": the model of stage `solver`; anything
    # else: a Hugging Face model path or name, sampled through the engine.
    teacher: str = "oracle"
    # Whose prompts the teacher answers: "synth" (the synthesized problems) and/or "seed" (the seed's training
    # problems). With several, one student is trained per source on the same token budget (the smallest).
    sources: list[str] = field(default_factory=lambda: ["synth"])
    traces: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=1, temperature=1.0, max_new_tokens=512))
    filter_correct: bool = False  # drop traces whose answer differs from the problem's reference (paper: off)
    max_prompts: int = 5000  # per source
    # "solver": start from the solver (the weaker model); "tiny": the untrained tiny model; else an HF path.
    student: str = "solver"
    epochs: int = 2
    batch_size: int = 16
    packing: bool = True  # exact packing (block-diagonal attention), see data/collate.py
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=8e-5))  # the paper: 8e-5 (batch 1024)
    eval: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, temperature=0.6, top_p=0.95))
    eval_limit: int = 200



@dataclass
class EvaluateConfig:
    """Accuracy on evaluation files (SPEC §7): math sets → mean accuracy over `n` samples per problem, code sets
    (`input_output` or `tests`) → pass@1 (mean over the samples of passing every test); each with its unscorable
    share. The format of a file is recognised from its fields; the release's chat-rendered prompts are unwrapped
    and rendered anew for the evaluated model (`prompts.solver`)."""

    sets: list[str] = field(default_factory=list)
    # "solver", "selfplay" (the last self-play policy), "sft" (the student of sft.sources[0]) or an HF path
    model: str = "solver"
    n: int = 16  # samples per problem (the paper: 16 at temperature 0.6, top-p 0.95)
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 512
    limit: int | None = None  # at most this many problems per set (None: all)
