"""The online half of GRPO: generation batches sampled by the engine from the current policy, inside the fit.

`GenerationBatches` plans a round: `selfplay.epochs` passes over the round's problems in a seeded order, cut into
generation batches of `grpo.problems_per_step` problems, each listed `grpo.iterations` times (μ optimizer steps per
batch). Its sampler resumes mid-fit where a checkpoint left it (`trainer.ResumeMidEpoch`).

`OnlineRollouts` (a Lightning callback) turns each planned batch into training data just before its step:
1. the engine takes the policy's weights when it does not hold this step's (every `grpo.sync_every` steps, at the
   first batch after a resume, after every sleep: `grpo.sleep_during_update`), in place where it can
   (`ServedEngine.push`), and is checked: its greedy tokens on a probe prompt must be the policy's own argmax at
   every position (`selfplay/grpo/probe_match`, 1.0 when it serves the trained weights);
2. `selfplay.rollouts.n` rollouts per problem, judged by the stage's `Rewards` (an unscorable rollout — cut off,
   no answer — earns 0); groups whose rewards are all equal are dropped and replaced by fresh problems, up to
   `grpo.max_resample` more draws (`grpo.filter_zero_variance`); if none is left the batch keeps them, at zero
   gradient;
3. π_old's log-probs by a no-grad pass (when μ > 1 or with importance sampling), the truncated importance weights
   against the engine's own log-probs, group-relative advantages;
4. the batch is written to `generations/gen_NNNNN.pt` before its first step, so a run killed anywhere replays the
   same rollouts (tests/test_grpo.py: kill -9 and resume equal the uninterrupted run).
In a multi-process fit every rank gets every rollout (the engine splits the sampling over ranks) and trains on its
share of the groups; the loss is normalised by the whole batch's completion tokens.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from promptcot_pl import distributed
from promptcot_pl.config import SamplingConfig
from promptcot_pl.data.atomic import atomic_write
from promptcot_pl.data.encode import encode_prompt
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.prompts import solver_prompt
from promptcot_pl.data.records import Problem
from promptcot_pl.data.sharding import ResumableLoader
from promptcot_pl.data.shared_prefix import SharedPrefix, shared_prefix_batch
from promptcot_pl.generation import ServedEngine
from promptcot_pl.losses.grpo import group_advantages, truncated_is_weights, zero_variance
from promptcot_pl.runner.context import log
from promptcot_pl.stages.selfplay.config import GRPOConfig
from promptcot_pl.stages.selfplay.rollouts import judge
from promptcot_pl.trainer import full_weights
from promptcot_pl.verify.rewards import Rewards


class _Resumable:
    """Batch sampler over the plan, one entry per batch, the same on every rank; `resume_after(k)` skips the first
    k of the next pass (the plan holds every epoch: its loader has one)."""

    def __init__(self, n: int) -> None:
        self.n, self.skip = n, 0

    def resume_after(self, batches: int) -> None:
        self.skip = batches

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[list[int]]:
        # a generator: the skip is taken at the first batch, not when Lightning makes an iterator it never reads
        start, self.skip = self.skip, 0
        for i in range(start, self.n):
            yield [i]


class GenerationBatches(L.LightningDataModule):
    def __init__(self, n_problems: int, problems_per_step: int, iterations: int, epochs: int, seed: int) -> None:
        super().__init__()
        self.plan: list[dict[str, Any]] = []
        for epoch in range(epochs):
            order = torch.randperm(n_problems, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
            for start in range(0, n_problems, problems_per_step):
                generation = len(self.plan) // iterations
                self.plan += [{"generation": generation, "iteration": k,
                               "problems": order[start: start + problems_per_step]} for k in range(iterations)]

    def train_dataloader(self) -> DataLoader:
        plan: Any = self.plan  # a list is a map-style dataset
        return ResumableLoader(plan, batch_sampler=_Resumable(len(self.plan)), collate_fn=lambda items: dict(items[0]))


@dataclass
class Group:
    """One problem's rollouts as sampled and judged (token ids as the engine produced them)."""

    problem: int  # index into the round's problems
    prompt_ids: list[int]
    completions: list[list[int]]
    texts: list[str]
    rewards: list[float]  # an unscorable rollout: 0
    truncated: list[bool]
    sampling_logps: list[list[float]] | None


class OnlineRollouts(Callback):
    def __init__(self, engine: ServedEngine, fmt: PromptFormat, problems: Sequence[Problem], rewards: Rewards,
                 tokenizer, sampling: SamplingConfig, grpo: GRPOConfig, out: Path, seed: int, max_length: int,
                 share_prefix: bool = True, export=None) -> None:
        self.engine, self.fmt, self.problems, self.rewards = engine, fmt, list(problems), rewards
        self.tokenizer, self.grpo, self.out, self.seed, self.max_length = tokenizer, grpo, out, seed, max_length
        self.share_prefix, self.export = share_prefix, export
        self.sampling = replace(sampling, logprobs=grpo.importance_sampling)
        self.synced_at: int | None = None  # the optimizer step whose weights the engine serves
        self.asleep = False  # put to sleep after sampling (grpo.sleep_during_update): the next batch wakes it
        self.current: tuple[int, dict[str, Any]] | None = None  # (generation index, its data)
        self.probe = [encode_prompt(tokenizer, solver_prompt(fmt, p.problem, p.domain)) for p in self.problems[:1]]

    # -- the hook ------------------------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, batch_idx: int) -> None:
        g = int(batch["generation"])
        if self.current is None or self.current[0] != g:
            self.current = (g, self._generation(trainer, pl_module, g, list(batch["problems"])))
        batch.update(self._share(self.current[1], trainer, pl_module.device))

    # -- one generation batch ------------------------------------------------------------------------------------
    def _generation(self, trainer: L.Trainer, module: Any, g: int, problems: list[int]) -> dict[str, Any]:
        path = self.out / "generations" / f"gen_{g:05d}.pt"
        # rank 0 decides and its data is every rank's: ranks never disagree on replaying (no shared filesystem
        # needed) nor train on their own re-scored π_old after a resume
        if distributed.broadcast(path.is_file() if distributed.is_zero() else False):
            # written before its first step: a resumed fit replays it exactly
            saved: dict[str, Any] = torch.load(path, weights_only=False) if distributed.is_zero() else {}
            return distributed.broadcast(saved)
        probe = self._sync(trainer, module)
        groups, drawn, zero = self._sample(g, problems)
        if self.grpo.sleep_during_update:
            self.engine.sleep()
            self.asleep = True
        if not groups:
            raise ValueError(f"selfplay grpo: every rollout of generation batch {g} is longer than data.max_length="
                             f"{self.max_length} with its prompt; raise data.max_length or lower "
                             "selfplay.rollouts.max_new_tokens")
        kept = [x for x in groups if not _flat(x.rewards)] if self.grpo.filter_zero_variance else groups
        if not kept:  # nothing to learn from: trained at zero gradient, counted
            kept = groups
        kept = kept[: self.grpo.problems_per_step]
        data: dict[str, Any] = {"groups": kept, "stats": self._stats(groups, kept, drawn, zero, probe),
                                "drawn_rewards": [x.rewards for x in groups]}
        if self.grpo.iterations > 1 or self.grpo.importance_sampling:
            whole = _batch(kept, self.tokenizer.pad_token_id, self.share_prefix)
            with trainer.precision_plugin.forward_context():  # the dtype the training step computes in
                old = module.score({k: v.to(module.device) for k, v in whole.items()}).cpu()
            data["old_logps"] = old
            if self.grpo.importance_sampling:
                sampled = torch.tensor([v for x in kept for c in (x.sampling_logps or []) for v in c])
                if len(sampled) != len(old):
                    log.warning("selfplay grpo: the engine's log-probs cover %d tokens of %d: no importance "
                                "weights for generation batch %d", len(sampled), len(old), g)
                else:
                    data["is_weights"] = truncated_is_weights(old, sampled, self.grpo.is_cap)
                    data["stats"]["logprob_gap"] = float((old - sampled).abs().mean()) if len(old) else 0.0
                    data["stats"]["is_weight_mean"] = float(data["is_weights"].mean()) if len(old) else 1.0
        data = distributed.broadcast(data if distributed.is_zero() else {})
        if distributed.is_zero():
            atomic_write(path, lambda tmp: torch.save(data, tmp))
        return data

    def _sync(self, trainer: L.Trainer, module: Any) -> float:
        """Push the policy's weights to the engine when due; returns the probe's match (nan: not checked)."""
        step = trainer.global_step
        # every sync_every optimizer steps (μ steps share a batch: the count is of steps, not batches); after a
        # resume at once, with the resumed weights (with sync_every > 1 those can be newer than an uninterrupted
        # run's engine held: such a resume is not bit-exact)
        if not self.asleep and self.synced_at is not None and step - self.synced_at < self.grpo.sync_every:
            return float("nan")
        self.asleep = False
        weights = full_weights(trainer.strategy)
        how = self.engine.push(weights, f"<policy at step {step}>",
                               lambda label: self.export(weights, self.out / f"sync_rank{distributed.rank()}")
                               if self.export else label)
        if self.synced_at is None:
            log.info("selfplay grpo: the engine serves the policy at step %d (%s)", step, how)
        self.synced_at = step
        if not self.grpo.probe_tokens:
            return float("nan")
        with trainer.precision_plugin.forward_context():
            return self._probe(module)

    def _probe(self, module: Any) -> float:
        """Share of the engine's greedy tokens on the probe prompt that are the policy's own argmax."""
        greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=self.grpo.probe_tokens)
        prompt = solver_prompt(self.fmt, self.problems[0].problem, self.problems[0].domain)
        tokens = self.engine.generate([prompt], greedy, local=True)[0][0].token_ids
        if not tokens:
            return 1.0
        ids = torch.tensor([self.probe[0] + tokens], device=module.device)
        with torch.no_grad():
            logits = module.model(input_ids=ids, use_cache=False).logits[0, len(self.probe[0]) - 1: -1]
        match = float((logits.argmax(-1).cpu() == torch.tensor(tokens)).float().mean())
        if match < 1:
            log.warning("selfplay grpo: the engine's greedy tokens on the probe differ from the policy's argmax at "
                        "%.0f%% of positions (a dtype or kernel gap, or weights not served)", 100 * (1 - match))
        return match

    def _sample(self, g: int, problems: list[int]) -> tuple[list[Group], int, int]:
        """Groups sampled for `problems`, then for fresh problems while zero-variance groups leave the batch short.
        Returns (every group sampled, problems drawn, zero-variance groups)."""
        rng = random.Random(self.seed * 100_003 + g)
        reserve = [i for i in rng.sample(range(len(self.problems)), len(self.problems)) if i not in set(problems)]
        groups: list[Group] = []
        todo, draws, informative = problems, 0, 0
        while todo:
            fresh = self._rollouts(todo, replace(self.sampling, seed=self.seed * 100_003 + g * 64 + draws))
            groups += fresh
            informative += sum(not _flat(x.rewards) for x in fresh)
            draws += 1
            need = self.grpo.problems_per_step - informative
            if not self.grpo.filter_zero_variance or need <= 0 or draws > self.grpo.max_resample:
                break
            todo, reserve = reserve[:need], reserve[need:]
        return groups, len(groups), sum(_flat(x.rewards) for x in groups)

    def _rollouts(self, indices: list[int], sampling: SamplingConfig) -> list[Group]:
        problems = [self.problems[i] for i in indices]
        prompts = [solver_prompt(self.fmt, p.problem, p.domain) for p in problems]
        outputs = self.engine.generate(prompts, sampling)
        judged = judge(self.fmt, problems, outputs, self.rewards)
        groups = []
        eos = self.tokenizer.eos_token_id
        for i, prompt, completions, scores in zip(indices, prompts, outputs, judged):
            ids = encode_prompt(self.tokenizer, prompt)
            # an empty completion (a stop string at its start) is scored as the EOS the engine stopped at
            tokens = [c.token_ids or [eos] for c in completions]
            if len(ids) + max(map(len, tokens)) > self.max_length:
                log.warning("selfplay grpo: problem %s's rollouts exceed data.max_length=%d: left out",
                            self.problems[i].id, self.max_length)
                continue
            groups.append(Group(i, ids, tokens, [c.text for c in completions],
                                [float(r) if r is not None else 0.0 for r, _ in scores],
                                [c.finish_reason == "length" for c in completions],
                                [c.token_logprobs or [float("nan")] for c in completions]
                                if all(c.token_logprobs is not None for c in completions) else None))
        return groups

    def _stats(self, groups: list[Group], kept: list[Group], drawn: int, zero: int, probe: float) -> dict[str, float]:
        rewards = torch.tensor([r for x in groups for r in x.rewards])
        lengths = torch.tensor([len(c) for x in kept for c in x.completions], dtype=torch.float)
        stats = {"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
                 "pass_rate": float((rewards >= 1).float().mean()), "zero_variance_share": zero / max(drawn, 1),
                 "groups_drawn": float(drawn), "groups_trained": float(len(kept)),
                 "completion_length": float(lengths.mean()),
                 "truncated_share": sum(t for x in groups for t in x.truncated) / max(len(rewards), 1)}
        if probe == probe:  # checked at this batch's sync
            stats["probe_match"] = probe
        return stats

    # -- this rank's share ---------------------------------------------------------------------------------------
    def _share(self, data: dict[str, Any], trainer: L.Trainer, device: torch.device) -> dict[str, Any]:
        groups: list[Group] = data["groups"]
        g_size = len(groups[0].rewards)
        advantages = group_advantages(torch.tensor([r for x in groups for r in x.rewards]), g_size,
                                      self.grpo.scale_rewards)
        per_token = [torch.full((len(c),), float(a)) for a, c in zip(advantages, (c for x in groups for c in x.completions))]
        spans = _token_spans(groups)
        rank, world = trainer.global_rank, trainer.world_size
        mine = list(range(rank, len(groups), world))
        real = 1.0
        if not mine:  # fewer groups than ranks: a group at zero advantage keeps this rank's step in lockstep
            mine, real = [0], 0.0
        batch = _batch([groups[i] for i in mine], self.tokenizer.pad_token_id, self.share_prefix)
        take = torch.cat([torch.arange(*spans[i]) for i in mine])
        out: dict[str, Any] = {k: v.to(device) for k, v in batch.items()}
        out["token_advantages"] = torch.cat(per_token)[take].to(device) * real
        out["token_real"] = torch.full((len(take),), real, device=device)
        out["normaliser"] = torch.tensor(float(sum(len(c) for x in groups for c in x.completions)), device=device)
        for key in ("old_logps", "is_weights"):
            if key in data:
                out[key] = data[key][take].to(device)
        out["stats"] = {k: torch.tensor(v, device=device) for k, v in data["stats"].items()}
        return out


def _flat(rewards: Sequence[float]) -> bool:
    return bool(zero_variance(torch.tensor(rewards), len(rewards))[0])


def _token_spans(groups: Sequence[Group]) -> list[tuple[int, int]]:
    """Each group's [start, end) in the batch's flat completion-token order."""
    spans, start = [], 0
    for x in groups:
        end = start + sum(map(len, x.completions))
        spans.append((start, end))
        start = end
    return spans


def _batch(groups: Sequence[Group], pad_id: int, share_prefix: bool) -> dict[str, torch.Tensor]:
    """Prefix-shared rows (one per group: the prompt once, then its rollouts) or one row per rollout."""
    if share_prefix:
        rows = [SharedPrefix(x.prompt_ids, x.completions, list(range(len(x.completions)))) for x in groups]
    else:
        rows = [SharedPrefix(x.prompt_ids, [c], [0]) for x in groups for c in x.completions]
    return shared_prefix_batch(rows, pad_id)
