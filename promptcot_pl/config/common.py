"""Settings every stage shares: the model, data, trainer, generation engine, optimizer, sampling and tracking.
(Part of the typed experiment configuration; `promptcot_pl/experiment.py` composes them with each stage's own
settings, `stages/<stage>/config.py`.)"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Literal

STAGE_NAMES = ("seed", "annotate", "coldstart", "em", "solver", "synth", "analyze", "sft", "selfplay", "evaluate")
"""Pipeline stages, in the order they run."""

# Keys that say how to run, not what to compute: a resumed run may change them (pipeline.py) and the stage
# cache ignores them (runner/stage_cache.py). Everything else — precision, accumulation, clipping, determinism
# included — changes results. (N processes compute what one does, so devices and strategy are how-to-run.)
HOW_TO_RUN = ("stages", "threads", "tracking.", "data.num_workers", "model.cache_dir", "engine.progress", "engine.device",
              "engine.release_during_fits", "verify.workers", "verify.canaries",
              "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
              "trainer.activation_checkpointing", "trainer.fsdp_sharding", "trainer.fsdp_state_dict",
              "trainer.log_every_n_steps", "trainer.checkpoint_every_n_steps", "trainer.enable_progress_bar",
              "trainer.logits_chunk_mib", "trainer.score_tokens", "trainer.memory_fraction")


def at_least_one(node: object, *names: str) -> list[tuple[str, str]]:
    """(field, why) for each of `names` below 1: the counts every config has."""
    return [(name, "must be at least 1") for name in names if getattr(node, name) < 1]


def sampling_invalid(temperature: float, top_p: float) -> list[tuple[str, str]]:
    """(field, why) for a sampling temperature below 0 or a top-p outside (0, 1]."""
    out = []
    if temperature < 0:
        out.append(("temperature", f"must be >= 0 (0: greedy), got {temperature}"))
    if not 0 < top_p <= 1:
        out.append(("top_p", f"must lie in (0, 1], got {top_p}"))
    return out


def config_problems(node: object, prefix: str = "") -> list[tuple[str, str]]:
    """(full dotted key, why) for every problem the config tree under `node` finds in itself: each dataclass
    checks its own values (`invalid()`), so a stage's checks live in its own package."""
    out: list[tuple[str, str]] = []
    if not dataclasses.is_dataclass(node):
        return out
    check = getattr(node, "invalid", None)
    if callable(check):
        out += [(f"{prefix}{key}", why) for key, why in check()]
    for f in dataclasses.fields(node):
        out += config_problems(getattr(node, f.name), f"{prefix}{f.name}.")
    return out


@dataclass
class TinyModelConfig:
    """The offline Llama-style model built when `model.path == "tiny"` (embeddings untied, as the results in docs/
    were measured with; the engines refresh tied models in place too).

    vLLM's CPU attention needs a head size (hidden_size / num_heads) of at least 32."""

    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 384
    max_position_embeddings: int = 1024  # RoPE: positions cost no parameters
    # The tokenizer's conventions (models/tokenizer_styles.py): "chatml" (Qwen: no BOS, ChatML template, EOS ids
    # <|im_end|> and <|endoftext|>), "llama3" (BOS, pad = EOS), "sentencepiece" (Llama-2/Mistral: "▁" prefix).
    style: Literal["chatml", "llama3", "sentencepiece"] = "chatml"
    thinking: bool = False  # chatml only: the template opens <think> in the generation prompt (Qwen3-Thinking)
    # every digit its own token (Qwen2.5, Llama-2 do this): what lets a tiny model learn column arithmetic
    split_digits: bool = False

    def invalid(self) -> list[tuple[str, str]]:
        out = []
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            out.append(("num_heads", f"must divide hidden_size={self.hidden_size}"))
        if self.thinking and self.style != "chatml":
            out.append(("thinking", f"a thinking template exists for style=chatml only, got {self.style!r}"))
        return out


@dataclass
class ModelConfig:
    """Where the prompt model p_θ and rationale model q_φ start from."""

    # A Hugging Face model directory or hub id for both models, or "tiny" to build one offline.
    path: str = "tiny"
    # Start q_φ from a different checkpoint than p_θ (None: the same as `path`).
    rationale_path: str | None = None
    # The inference dtype: generation engines (HF, vLLM) load models in it. Fits never train in it: their storage
    # (master weights, optimizer states) follows trainer.precision (`trainer.training_dtype`), fp32 for *-mixed.
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # Built tiny models and tokenizers (keyed by their config and training corpus) and checkpoints converted from
    # .gguf files (keyed by the file's digest) are cached here. Default: $PROMPTCOT_CACHE, else ~/.cache/promptcot_pl.
    cache_dir: str = field(default_factory=lambda: os.environ.get("PROMPTCOT_CACHE", "~/.cache/promptcot_pl"))
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class RoleFormat:
    """How one role's prompts are written and rendered (`data/formats.py`)."""

    # raw: the words as they are (plus the tokenizer's own BOS); chat: the tokenizer's chat template, one user turn,
    # the generation prompt added
    style: Literal["raw", "chat"] = "raw"
    wording: Literal["release", "ours"] = "release"  # the PromptCoT releases' texts or this project's
    system: str | None = None  # chat only: a system turn before the user turn (none by default, as the release)
    # a thinking model (Qwen3-Thinking, QwQ): only the text after the first </think> is graded, and its traces and
    # pairs are written in the release's "\n<think>\n…" layout
    thinking: bool = False


@dataclass
class PromptsConfig:
    """Prompt format per role; the defaults are the release's (shared RELEASE_FORMATS §1–3)."""

    prompt_model: RoleFormat = field(default_factory=lambda: RoleFormat("raw", "release"))  # p_θ: c → (z, x)
    rationale_model: RoleFormat = field(default_factory=lambda: RoleFormat("raw", "ours"))  # q_φ: (c, x) → z
    # the solver, the self-play policy, majority-vote references and every evaluated model
    solver: RoleFormat = field(default_factory=lambda: RoleFormat("chat", "release"))
    teacher: RoleFormat = field(default_factory=lambda: RoleFormat("chat", "release"))  # SFT teacher (engine)
    test_writer: RoleFormat = field(default_factory=lambda: RoleFormat("chat", "ours"))
    annotator: RoleFormat = field(default_factory=lambda: RoleFormat("chat", "release"))  # stage annotate

    def invalid(self) -> list[tuple[str, str]]:
        out = []
        for role in ("prompt_model", "rationale_model", "solver", "teacher", "test_writer", "annotator"):
            fmt = getattr(self, role)
            if fmt.system is not None and fmt.style != "chat":
                out.append((f"{role}.system", f"a system turn needs {role}.style=chat"))
        if self.rationale_model.wording == "release":
            out.append(("rationale_model.wording", "the release has no rationale model q_φ (and so no wording for "
                                                   "it); use 'ours'"))
        return out


@dataclass
class DomainConfig:
    """The seed corpus of (concepts, rationale, problem, answer|tests) triples."""

    # arithmetic: multi-step word problems with worked column arithmetic, which the tiny models learn (the
    # quickstart's world); math: competition-style families (too hard for a tiny model); code: programming tasks
    name: Literal["arithmetic", "math", "code"] = "math"
    # "builtin": generate the domain offline; "triples": read our JSONL records from `path`;
    # "promptcot": read the released problem-generation rows (prompt/completion with markers) from `path`.
    source: Literal["builtin", "triples", "promptcot"] = "builtin"
    path: str | None = None
    n_items: int = 2000
    heldout_fraction: float = 0.1
    # held-out problems as a count (replaces heldout_fraction): an evaluation that must resolve a few points of
    # accuracy needs several hundred problems, whatever the corpus size
    n_heldout: int | None = None

    def invalid(self) -> list[tuple[str, str]]:
        out = at_least_one(self, "n_items")
        if not 0.0 < self.heldout_fraction < 1.0:
            out.append(("heldout_fraction", "must lie in (0, 1)"))
        if self.n_heldout is not None and not 1 <= self.n_heldout < self.n_items:
            out.append(("n_heldout", f"must lie in [1, n_items={self.n_items}), got {self.n_heldout}"))
        if self.source != "builtin" and not self.path:
            out.append(("path", f"required when source={self.source!r}"))
        return out


@dataclass
class DataConfig:
    """How records become training batches."""

    # Longest training/scoring sequence (prompt + target + EOS); longer examples are dropped and counted, never cut.
    max_length: int = 640
    # Pack several examples per row (exact: segments never attend to each other).
    packing: bool = False
    num_workers: int = 0

    def invalid(self) -> list[tuple[str, str]]:
        return at_least_one(self, "max_length")


@dataclass
class OptimConfig:
    """AdamW with a warmup + decay schedule from `transformers.get_scheduler` (`modules/optim.py`)."""

    lr: float = 2e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    # "wsd": warmup, then the stable lr, then a cosine decay to 0 over the last `decay_ratio` of the steps
    scheduler: Literal["constant", "cosine", "linear", "wsd"] = "cosine"
    # Share of the fit's optimizer steps spent warming up, rounded *up*: any ratio > 0 gives a short fit at least
    # one warmup step, so its first update is never a full-lr AdamW step (which is lr·sign(g) on every weight).
    warmup_ratio: float = 0.03
    warmup_steps: int | None = None  # absolute warmup; replaces warmup_ratio when set
    decay_ratio: float = 0.2  # scheduler=wsd: the share of steps in the final decay
    # Write this fit's final AdamW state beside its exported model (`optimizer.pt`), for a later fit to continue.
    keep_state: bool = False
    # Start from the AdamW state saved beside the base model (its moments and step count) instead of a fresh one:
    # the first updates are scaled by the moments of the fit the model came from. The base must have been fitted
    # with keep_state (single process or DDP; FSDP's sharded state is not kept).
    continue_state: bool = False

    def invalid(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for values the types allow but a fit cannot use."""
        out = []
        if self.lr < 0:
            out.append(("lr", f"must be >= 0, got {self.lr}"))
        if len(self.betas) != 2:
            out.append(("betas", "expected two numbers"))
        if not 0 <= self.warmup_ratio < 1:
            out.append(("warmup_ratio", f"must lie in [0, 1), got {self.warmup_ratio}"))
        if self.warmup_steps is not None and self.warmup_steps < 0:
            out.append(("warmup_steps", f"must be >= 0, got {self.warmup_steps}"))
        if not 0 < self.decay_ratio <= 1:
            out.append(("decay_ratio", f"must lie in (0, 1], got {self.decay_ratio}"))
        return out

    def warmup(self, total_steps: int) -> int:
        """Warmup steps of a fit of `total_steps` optimizer steps: ≥ 1 whenever a warmup is asked for."""
        if self.warmup_steps is not None:
            return min(self.warmup_steps, total_steps)
        return min(math.ceil(self.warmup_ratio * total_steps), total_steps)


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

    def invalid(self) -> list[tuple[str, str]]:
        out = at_least_one(self, "n", "max_new_tokens") + sampling_invalid(self.temperature, self.top_p)
        if self.top_k < 0:
            out.append(("top_k", f"must be >= 0 (0: off), got {self.top_k}"))
        return out

    def check(self) -> None:
        """Raise on the first problem: what an engine asked to sample with this does."""
        for key, why in self.invalid():
            raise ValueError(f"sampling.{key}: {why}")


@dataclass
class EngineConfig:
    """Which generation backend runs every sampling stage, and its resources."""

    backend: Literal["hf", "vllm"] = "hf"
    # hf: tokens (prompt + new) per generate() batch; batches are built from length-sorted prompts.
    batch_token_budget: int = 16384
    device: str = "auto"  # hf: "auto" (cuda when available), "cpu", "cuda:0", ...
    progress: bool = True
    # Sampling jobs (synthesis, rollouts, traces, EM's candidates, evaluations) write a shard file every this many
    # prompts and resume from the finished ones (generation/streamed.py); prompts are seeded by their index in the
    # job, so this does not change the samples.
    shard_prompts: int = 256
    # Fits and scoring passes inside a stage that generates (EM, self-play) put the engine to sleep (vLLM sleep
    # mode on GPUs; on CPU, or for the hf backend, its weights are freed) and wake it after: false keeps it
    # resident, faster where memory allows both.
    release_during_fits: bool = True
    # vllm
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    enforce_eager: bool = False  # skip torch.compile / CUDA graphs: faster start, slower steady state

    def invalid(self) -> list[tuple[str, str]]:
        out = at_least_one(self, "shard_prompts")
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device)):
            out.append(("device", f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"))
        if not 0 < self.gpu_memory_utilization <= 1:
            out.append(("gpu_memory_utilization", f"a share of GPU memory, 0 < x ≤ 1; got "
                                                  f"{self.gpu_memory_utilization}"))
        return out


@dataclass
class TrainerConfig:
    """Hardware and loop settings shared by every fit; `trainer.build_trainer` is their only reader."""

    accelerator: str = "auto"
    # Processes on this machine. Under torchrun / `fabric run` the launcher's counts win; `promptcot run` with
    # devices > 1 starts torchrun itself.
    devices: str = "1"
    num_nodes: int = 1
    # auto: one device, or DDP when launched with several processes. fsdp: see trainer.py.
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    # Compute precision of fits: "bf16-mixed" (GPUs with bf16; the paper recipes) and "16-mixed" compute in half
    # precision over fp32 master weights and optimizer states; "32-true" is fp32 throughout. bf16 master weights
    # ("bf16-true") lose AdamW's updates at the paper's learning rates: refused unless
    # bf16_true_optimizer=kahan.
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"] = "32-true"
    # bf16-true (bf16 weights and optimizer states, half the memory of fp32 masters) only with an optimizer that
    # keeps the updates: "kahan" = torch-optimi's AdamW with Kahan-compensated summation.
    bf16_true_optimizer: Literal["refuse", "kahan"] = "refuse"
    # The LM head and log-softmax run on target positions only, this many MiB of fp32 logits at a time (at a
    # 152k vocabulary: 441 positions), in every fit and scoring pass: no [tokens, vocabulary] copy.
    logits_chunk_mib: int = 256
    # No-grad scoring batches (E-step candidates, held-out bound, DPO references) hold at most this many token
    # positions (rows × longest row): memory is set by tokens, not by a count of targets of unknown length.
    score_tokens: int = 16384
    # Score the K candidates of a prompt (and a DPO pair's two completions) in one row, the prompt encoded once,
    # under a 4-D mask (sdpa reads it as is, eager as an additive mask). false: one target per row with a plain
    # padding mask, for attention backends that take no dense mask (flash-attention-2, flex).
    share_prefix: bool = True
    # The memory budget: fits and scoring passes may take this share of each GPU (enforced by
    # torch.cuda.set_per_process_memory_fraction). An engine kept resident beside them
    # (engine.release_during_fits=false) needs engine.gpu_memory_utilization + this ≤ 1, checked at load.
    memory_fraction: float = 0.9
    activation_checkpointing: bool = False  # recompute decoder layers in backward (fsdp): less memory, ~30% slower
    fsdp_sharding: Literal["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"] = "FULL_SHARD"
    # "sharded": every rank writes its shard of a checkpoint (fast, scales); "full": one file gathered on rank 0
    fsdp_state_dict: Literal["sharded", "full"] = "sharded"
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    # A resumable checkpoint (`last.ckpt`) is written every this many optimizer steps.
    checkpoint_every_n_steps: int = 50
    enable_progress_bar: bool = True
    deterministic: bool = False

    def invalid(self) -> list[tuple[str, str]]:
        out = at_least_one(self, "num_nodes", "accumulate_grad_batches", "score_tokens", "logits_chunk_mib")
        if not (self.devices == "auto" or self.devices.isdigit() and int(self.devices) >= 1):
            out.append(("devices", f"expected a number of processes (>= 1) or 'auto', got {self.devices!r}"))
        if not 0 < self.memory_fraction <= 1:
            out.append(("memory_fraction", f"a share of GPU memory, 0 < x ≤ 1; got {self.memory_fraction}"))
        return out


@dataclass
class VerifyConfig:
    """How rewards are checked (verify/): the code sandbox's limits and the reward canaries."""

    # Wall-clock seconds per unit test of a generated program (SPEC §5 allows 30). CPU time is capped at this + 1.
    code_timeout_s: float = 30.0
    # Sandboxes (and math checks) run at once on this process; None: the machine's cores / the processes on it, so
    # 8 ranks of one node do not run 8 × cores sandboxes and turn correct programs into timeouts.
    workers: int | None = None
    # Probe the reward with adversarial completions before each self-play round and each SFT / evaluate run; the
    # stage refuses to start if any is rewarded (verify/canaries.py).
    canaries: bool = True


@dataclass
class TrackingConfig:
    """MLflow store. `MLFLOW_TRACKING_URI` in the environment wins over `uri`."""

    enabled: bool = True
    uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_location: str = "mlflow/artifacts"
    # MLflow experiment name (None: the experiment's `name`).
    experiment: str | None = None
    # A tracking server (http[s]://) that cannot be reached: false (default) runs on and keeps what it would have
    # logged in <run_dir>/tracking_outbox.jsonl, sent when the server answers again (at the latest when the run
    # ends, or by a rerun); true stops the run before any work with an error naming the server.
    strict: bool = False
