"""Batched generation with Hugging Face `generate`: left padding, KV cache, length-sorted batches under a token
budget, n samples per prompt, stop strings honoured and cut, greedy at temperature 0, seeded.

Sampling is exactly the configured one: the checkpoint's generation_config (a repetition penalty, top-k 20, …) is
replaced on load by one that holds only the token ids, and every call builds a fresh `GenerationConfig` from our
`SamplingConfig` — the distribution vLLM samples from with the same settings. Generation stops, and completions
are trimmed, on every EOS id of the model (`models.stop_ids`). Prompts are encoded by `data/encode.py`'s rule.

transformers does the decoding (`GenerationMixin.generate`, `stop_strings`); this module decides the batches and
turns rows back into `Completion`s. Log-probs, when asked for, come from one teacher-forced forward pass over
each batch (raw model distribution, the same quantity vLLM reports), not from per-step scores, which would hold
a [batch, vocab] tensor for every generated step.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from promptcot_pl import distributed
from promptcot_pl.accounting import count_generated
from promptcot_pl.config import EngineConfig, SamplingConfig
from promptcot_pl.data.collate import IGNORE
from promptcot_pl.data.encode import encode_prompt
from promptcot_pl.generation.engine import Completion
from promptcot_pl.models import load_model, load_tokenizer, stop_ids


def check_sampling(sampling: SamplingConfig) -> None:
    if sampling.n < 1 or sampling.max_new_tokens < 1:
        raise ValueError("sampling.n and sampling.max_new_tokens must be at least 1")
    if sampling.temperature < 0 or not 0 < sampling.top_p <= 1 or sampling.top_k < 0:
        raise ValueError("sampling: temperature >= 0, 0 < top_p <= 1 and top_k >= 0 are required")


def plan_batches(prompt_lengths: Sequence[int], n: int, max_new_tokens: int, budget: int) -> list[list[tuple[int, int]]]:
    """Rows (prompt index, sample index) grouped longest-first so that rows × (longest prompt + new tokens)
    stays within `budget` (a batch always holds at least one row)."""
    rows = sorted(((i, k) for i in range(len(prompt_lengths)) for k in range(n)),
                  key=lambda row: -prompt_lengths[row[0]])
    batches: list[list[tuple[int, int]]] = []
    for row in rows:
        if batches:
            width = prompt_lengths[batches[-1][0][0]] + max_new_tokens  # the first row is the longest
            if (len(batches[-1]) + 1) * width <= budget:
                batches[-1].append(row)
                continue
        batches.append([row])
    return batches


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
        from promptcot_pl.models.head import labelled_logprobs, owner_sums  # no [tokens, vocab] logits

        batch = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                 "labels": labels.to(self.device)}
        logp, owners = labelled_logprobs(self.model, batch)
        for c, value in zip(completions, owner_sums(logp, owners, len(rows))[0].tolist()):
            c.logprob = value

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], sampling: SamplingConfig,
                 local: bool = False) -> list[list[Completion]]:
        check_sampling(sampling)
        self._awake()
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        batches = plan_batches([len(e) for e in encoded], sampling.n, sampling.max_new_tokens,
                               self.cfg.batch_token_budget)
        greedy = sampling.temperature == 0
        config = GenerationConfig(max_new_tokens=sampling.max_new_tokens, do_sample=not greedy, num_beams=1,
                                  pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids,
                                  repetition_penalty=1.0)
        if not greedy:  # top_k 0 is off (None would let transformers' default of 50 in)
            config.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        options: dict = {"generation_config": config}
        stops = [s for s in sampling.stop if s]
        if stops:
            config.stop_strings = stops
            options["tokenizer"] = self.tokenizer
        # In a multi-process run this rank runs batches rank, rank + N, ... of the single-process plan, each with
        # its single-process seed, and the ranks exchange results: the same completions as one process, N× faster.
        rank, world = (0, 1) if local else (distributed.rank(), distributed.world_size())
        mine = [(b, batch) for b, batch in enumerate(batches) if b % world == rank]
        done_rows: list[tuple[int, int, Completion]] = []
        bar = tqdm(total=sum(len(batch) for _, batch in mine), desc="generate", unit="seq",
                   disable=not self.cfg.progress or len(batches) < 2 or rank != 0)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # sampling must not move the caller's RNG
            for b, batch in mine:
                torch.manual_seed(sampling.seed + b)  # same call, same seed → same completions
                rows = [encoded[i] for i, _ in batch]
                width = max(len(r) for r in rows)
                ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, row in enumerate(rows):
                    ids[r, width - len(row):] = torch.tensor(row)
                    mask[r, width - len(row):] = 1
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
