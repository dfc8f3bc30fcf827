"""Batched generation with Hugging Face `generate`: left padding, KV cache, length-sorted batches under a token
budget, n samples per prompt, stop strings honoured and cut, greedy at temperature 0, seeded.

Sampling is exactly the configured one: the checkpoint's generation_config (a repetition penalty, top-k 20, …) is
replaced on load by one that holds only the token ids, and every call builds a fresh `GenerationConfig` from our
`SamplingConfig` — the distribution vLLM samples from with the same settings. Generation stops, and completions
are trimmed, on every EOS id of the model (`models.stop_ids`). Prompts are encoded by `data/encode.py`'s rule.

Every sample draws from a random stream of its own, seeded as vLLM seeds it (`engine.prompt_seed`: the call's
seed, the prompt's index in the job, the sample's number), and drawn as vLLM draws (`RowStreams`). So a sample
does not depend on which batch, shard or rank generated it, and sample k of two prompts never shares its random
numbers.

transformers does the decoding (`GenerationMixin.generate`, `stop_strings`); this module decides the batches and
turns rows back into `Completion`s. Log-probs, when asked for, come from one teacher-forced forward pass over
each batch (raw model distribution, the same quantity vLLM reports), not from per-step scores, which would hold
a [batch, vocab] tensor for every generated step.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch
from tqdm.auto import tqdm
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from promptcot_pl import distributed
from promptcot_pl.accounting import count_generated
from promptcot_pl.config import EngineConfig, SamplingConfig
from promptcot_pl.data.collate import IGNORE
from promptcot_pl.data.encode import encode_prompt
from promptcot_pl.data.token_budget import token_batches
from promptcot_pl.generation.engine import Completion, prompt_seed
from promptcot_pl.models import load_model, load_tokenizer, stop_ids


def plan_batches(prompt_lengths: Sequence[int], n: int, max_new_tokens: int, budget: int) -> list[list[tuple[int, int]]]:
    """Rows (prompt index, sample index) grouped longest-first so that rows × (longest prompt + new tokens)
    stays within `budget` (a batch always holds at least one row)."""
    rows = sorted(((i, k) for i in range(len(prompt_lengths)) for k in range(n)),
                  key=lambda row: -prompt_lengths[row[0]])
    return token_batches(rows, budget, width=lambda row: prompt_lengths[row[0]] + max_new_tokens)


class RowStreams(LogitsProcessor):
    """The last logits processor of a greedy `generate`: row r's next token is drawn from the configured
    distribution with the random stream of its own generator, and returned as the only finite score, which greedy
    decoding then takes. The draw is vLLM's (and `torch.multinomial`'s): argmax of p / q with q ~ Exp(1) per token,
    which moves only when the leading tokens' race is close — a sample changes little under the tiny numeric
    differences between batch shapes or process counts. The distribution is the model's under transformers' own
    temperature, top-k and top-p warpers."""

    def __init__(self, sampling: SamplingConfig, seeds: Sequence[int], device: torch.device) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(sampling.temperature)])
        if sampling.top_k > 0:
            self.warpers.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(sampling.top_p))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        probs = self.warpers(input_ids, scores).float().softmax(dim=-1)
        race = torch.empty_like(probs)
        for row, generator in zip(race, self.generators):
            row.exponential_(generator=generator)
        token = probs.div_(race).argmax(dim=-1, keepdim=True)  # never a zero-probability token
        return torch.full_like(scores, -torch.inf).scatter_(1, token, 0.0)


class HFEngine:
    def __init__(self, model_path: str | Path, cfg: EngineConfig, dtype: str = "float32") -> None:
        self.cfg, self.dtype = cfg, dtype
        if cfg.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
        self.path = Path(model_path)
        self.model: Any = None  # the loaded causal LM; None while asleep
        self._load()

    def refresh(self, checkpoint_dir: str | Path) -> None:
        self.path = Path(checkpoint_dir)
        if self.model is None:  # asleep: loaded when next asked to generate
            return
        self._load()

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """The policy's state dict copied into the served model, cast to its dtype and device (strict: the same
        architecture). Loaded from `path` first when asleep."""
        self._awake()
        dtype = next(self.model.parameters()).dtype
        self.model.load_state_dict({k: v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)
                                    for k, v in weights.items()}, strict=True)

    def sleep(self) -> str:
        """Free the weights (and the accelerator memory they hold) until the next `generate`; returns how."""
        self.model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return "weights freed"

    def _awake(self) -> None:
        if self.model is None:
            self._load()

    def _load(self) -> None:
        checkpoint_dir = self.path
        self.tokenizer = load_tokenizer(checkpoint_dir)
        self.tokenizer.padding_side = "left"
        model: Any = load_model(checkpoint_dir, self.dtype)
        self.model = model.to(self.device).eval()
        self.eos_ids = stop_ids(checkpoint_dir, self.tokenizer)
        # only token ids survive from the checkpoint's generation config: no sampling default leaks into ours
        self.model.generation_config = GenerationConfig(eos_token_id=self.eos_ids,
                                                        pad_token_id=self.tokenizer.pad_token_id,
                                                        bos_token_id=self.tokenizer.bos_token_id)

    def close(self) -> None:
        self.sleep()

    def _trim(self, generated: list[int], stops: Sequence[str]) -> Completion:
        ids = generated
        finish: Literal["stop", "length"] = "length"
        ends = [i for i, token in enumerate(ids) if token in self.eos_ids]
        if ends:
            ids, finish = ids[: ends[0] + 1], "stop"
        text = cast(str, self.tokenizer.decode(ids, skip_special_tokens=True))  # one sequence: one string
        hits = [(text.find(s), s) for s in stops if s in text]
        if hits:
            cut, stop = min(hits)
            text, finish = text[:cut], "stop"
            # Keep the fewest tokens whose text contains the stop string (decoding a prefix is monotone).
            lo, hi = 1, len(ids)
            while lo < hi:
                mid = (lo + hi) // 2
                if len(self.tokenizer.decode(ids[:mid], skip_special_tokens=True)) >= cut + len(stop):
                    hi = mid
                else:
                    lo = mid + 1
            ids = ids[:lo]
        return Completion(text=text, token_ids=ids, finish_reason=finish)

    def _logprobs(self, prompts: list[list[int]], completions: list[Completion]) -> None:
        rows = [p + c.token_ids for p, c in zip(prompts, completions)]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (prompt, row) in enumerate(zip(prompts, rows)):
            ids[r, : len(row)] = torch.tensor(row)
            labels[r, len(prompt): len(row)] = torch.tensor(row[len(prompt):], dtype=torch.long)
            mask[r, : len(row)] = 1
        from promptcot_pl.losses import owner_sums
        from promptcot_pl.models.head import labelled_logprobs  # no [tokens, vocab] logits

        batch = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                 "labels": labels.to(self.device)}
        logp, owners = labelled_logprobs(self.model, batch)
        for c, value in zip(completions, owner_sums(logp, owners, len(rows))[0].tolist()):
            c.logprob = value
        values = logp.tolist()  # in row order, each row's tokens in order
        start = 0
        for c in completions:
            c.token_logprobs, start = values[start: start + len(c.token_ids)], start + len(c.token_ids)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, local: bool = False,
                 indices: Sequence[int] | None = None) -> list[list[Completion]]:
        sampling.check()
        self._awake()
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        index = list(range(len(prompts))) if indices is None else list(indices)
        batches = plan_batches([len(e) for e in encoded], sampling.n, sampling.max_new_tokens,
                               self.cfg.batch_token_budget)
        config = GenerationConfig(max_new_tokens=sampling.max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids,
                                  repetition_penalty=1.0)
        options: dict = {"generation_config": config}
        stops = [s for s in sampling.stop if s]
        if stops:
            config.stop_strings = stops
            options["tokenizer"] = self.tokenizer
        # In a multi-process run this rank runs batches rank, rank + N, ... of the single-process plan and the ranks
        # exchange results; each sample's stream is its own, so they equal the single-process completions exactly.
        rank, world = (0, 1) if local else (distributed.rank(), distributed.world_size())
        mine = [batch for b, batch in enumerate(batches) if b % world == rank]
        done_rows: list[tuple[int, int, Completion]] = []
        bar = tqdm(total=sum(len(batch) for batch in mine), desc="generate", unit="seq",
                   disable=not self.cfg.progress or len(batches) < 2 or rank != 0)
        for batch in mine:
            rows = [encoded[i] for i, _ in batch]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, row in enumerate(rows):
                ids[r, width - len(row):] = torch.tensor(row)
                mask[r, width - len(row):] = 1
            if sampling.temperature > 0:  # temperature 0: greedy, no random numbers at all
                seeds = [prompt_seed(sampling.seed, index[i], sampling.n) + k for i, k in batch]
                options["logits_processor"] = LogitsProcessorList([RowStreams(sampling, seeds, self.device)])
            sequences = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                            **options)
            done = [self._trim(seq[width:].tolist(), stops) for seq in sequences]
            count_generated(sum(len(c.token_ids) for c in done))
            if sampling.logprobs:
                self._logprobs(rows, done)
            done_rows += [(i, k, completion) for (i, k), completion in zip(batch, done)]
            bar.update(len(batch))
        bar.close()
        out: list[list[Completion | None]] = [[None] * sampling.n for _ in prompts]
        for part in distributed.gather_objects(done_rows) if world > 1 else [done_rows]:
            for i, k, completion in part:
                out[i][k] = completion
        return out  # type: ignore[return-value]
