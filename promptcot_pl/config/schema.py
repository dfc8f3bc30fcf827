"""Typed experiment configuration: one dataclass per area, composed into `ExperimentConfig`.

The dataclasses hold the defaults; YAML files and `a.b=c` overrides only change them (see `loading.py`).
A field exists only because some code reads it. Backends are `Literal` fields matched in one place.
OmegaConf validates types and `Literal` choices when files are merged into these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

STAGE_NAMES = ("seed", "coldstart", "em", "solver", "synth", "analyze", "selfplay")
"""Pipeline stages, in the order they run."""


@dataclass
class TinyModelConfig:
    """The offline Llama-style model built when `model.path == "tiny"` (embeddings untied, for vLLM reloads).

    vLLM's CPU attention needs a head size (hidden_size / num_heads) of at least 32."""

    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 384
    max_position_embeddings: int = 512


@dataclass
class ModelConfig:
    """Where the prompt model p_θ and rationale model q_φ start from."""

    # A Hugging Face model directory or hub id for both models, or "tiny" to build one offline.
    path: str = "tiny"
    # Start q_φ from a different checkpoint than p_θ (None: the same as `path`).
    rationale_path: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # Built tiny models and tokenizers are cached here, keyed by their config and training corpus.
    cache_dir: str = "~/.cache/promptcot_pl"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class DomainConfig:
    """The seed corpus of (concepts, rationale, problem, answer|tests) triples."""

    name: Literal["math", "code"] = "math"
    # "builtin": generate the domain offline; "triples": read our JSONL records from `path`;
    # "promptcot": read the released problem-generation rows (prompt/completion with markers) from `path`.
    source: Literal["builtin", "triples", "promptcot"] = "builtin"
    path: str | None = None
    n_items: int = 2000
    heldout_fraction: float = 0.1


@dataclass
class DataConfig:
    """How records become training batches."""

    max_length: int = 384
    # Pack several examples per row (exact: segments never attend to each other).
    packing: bool = False
    num_workers: int = 0


@dataclass
class OptimConfig:
    """AdamW with a warmup + decay schedule from `transformers.get_scheduler`."""

    lr: float = 2e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_ratio: float = 0.03


@dataclass
class SamplingConfig:
    """How to sample from a model (both engines read the same fields)."""

    n: int = 1  # completions per prompt
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)  # generation ends at the first stop string, which is cut off
    seed: int = 0
    logprobs: bool = False  # also return each completion's summed log-prob under the model


@dataclass
class EngineConfig:
    """Which generation backend runs every sampling stage, and its resources."""

    backend: Literal["hf", "vllm"] = "hf"
    # hf: tokens (prompt + new) per generate() batch; batches are built from length-sorted prompts.
    batch_token_budget: int = 16384
    device: str = "auto"  # hf: "auto" (cuda when available), "cpu", "cuda:0", ...
    progress: bool = True
    # vllm
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    enforce_eager: bool = False  # skip torch.compile / CUDA graphs: faster start, slower steady state


@dataclass
class TrainerConfig:
    """Hardware and loop settings shared by every fit; `trainer.build_trainer` is their only reader."""

    accelerator: str = "auto"
    # One device until the stages are rank-aware (multi-process DDP/FSDP launches are issue I's work).
    devices: str = "1"
    num_nodes: int = 1
    strategy: Literal["auto"] = "auto"
    precision: str = "32-true"
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    # A resumable checkpoint (`last.ckpt`) is written every this many optimizer steps.
    checkpoint_every_n_steps: int = 50
    enable_progress_bar: bool = True
    deterministic: bool = False


@dataclass
class TrackingConfig:
    """MLflow store. `MLFLOW_TRACKING_URI` in the environment wins over `uri`."""

    enabled: bool = True
    uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_location: str = "mlflow/artifacts"
    # MLflow experiment name (None: the experiment's `name`).
    experiment: str | None = None


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
    rationale_temperature: float = 1.0  # sampling z_k ~ q_φ (E-step and the held-out bound)
    z_temperature: float = 1.0  # z̃ when z_mode = sample
    max_rationale_tokens: int = 128
    epochs_e: int = 1
    epochs_m: int = 1
    batch_size: int = 16
    score_batch_size: int = 32
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
    # (z, x) ~ p_θ(·|c): n samples per concept set (the paper: many seeds, temperature 0.8)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, temperature=0.8, max_new_tokens=512))
    generators: list[str] = field(default_factory=lambda: ["em", "coldstart"])  # whose p_θ synthesizes
    near_duplicate_threshold: float = 0.2  # MinHash-LSH Jaccard over content words (the paper: 0.2)
    num_perm: int = 128
    decontamination_ngram: int = 13  # word n-gram overlap with an evaluation problem drops a problem
    eval_sets: list[str] = field(default_factory=list)  # JSONL files with "problem"; the held-out split always counts
    min_words: int = 5  # shorter problems are degenerate
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
    dpo: DPOConfig = field(default_factory=DPOConfig)
    epochs: int = 1
    batch_size: int = 16  # pairs per optimizer step (the paper: 16)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, warmup_ratio=0.1))  # the paper: 1e-6
    # held-out accuracy (the seed's held-out problems, ground-truth answers) before and after every round
    eval: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, temperature=0.6, top_p=0.95))
    eval_limit: int = 200


@dataclass
class ExperimentConfig:
    """One experiment: `promptcot run EXPERIMENT.yaml [a.b=c ...]`."""

    # Experiment name (None: the YAML file's stem); the run directory is `<output_dir>/<name>/<run_name>`.
    name: str | None = None
    run_name: str = "main"
    output_dir: str = "runs"
    seed: int = 0
    stages: list[str] = field(default_factory=lambda: list(STAGE_NAMES))
    model: ModelConfig = field(default_factory=ModelConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    coldstart: ColdStartConfig = field(default_factory=ColdStartConfig)
    em: EMConfig = field(default_factory=EMConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)
    selfplay: SelfPlayConfig = field(default_factory=SelfPlayConfig)
