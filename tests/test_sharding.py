"""Global batches split over ranks (data/sharding.py), the FSDP wrap policy, and the paper recipes."""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import torch

from promptcot_pl.data.collate import IGNORE, Encoded, pad_batch
from promptcot_pl.data.sharding import GlobalBatchSampler, MarkPadding, PaddedItems, sharded_loader
from tests.conftest import REPO


def _batches(n, batch_size, world, epoch=0):
    per_rank = []
    for rank in range(world):
        sampler = GlobalBatchSampler(n, batch_size, rank=rank, world_size=world, seed=3)
        sampler.set_epoch(epoch)
        per_rank.append(list(sampler))
    return per_rank


def test_the_ranks_batches_together_are_the_single_process_batch():
    (single,) = _batches(23, 8, 1)
    for world in (2, 3, 4):
        parts = _batches(23, 8, world)
        assert all(len(p) == len(single) for p in parts)  # every rank runs the same number of steps (FSDP)
        for step, batch in enumerate(single):
            union = sorted(i for p in parts for i in p[step] if i >= 0)
            assert union == sorted(batch)


def test_a_short_last_batch_gives_the_ranks_without_an_item_a_flagged_padding_copy():
    parts = _batches(9, 8, 4)  # the last global batch has one item for four ranks
    last = [p[-1] for p in parts]
    assert sum(i >= 0 for b in last for i in b) == 1
    padded = [b for b in last if b[0] < 0]
    assert len(padded) == 3
    items = PaddedItems(list("abcdefghi"))
    assert items[padded[0][0]][1] is False and items[padded[0][0]][0] in "abcdefghi"


def test_epochs_reshuffle_and_a_resume_skips_the_batches_already_trained_on():
    (e0,), (e1,) = _batches(32, 4, 1, epoch=0), _batches(32, 4, 1, epoch=1)
    assert e0 != e1
    sampler = GlobalBatchSampler(32, 4, seed=3)
    sampler.resume_after(5)
    assert list(sampler) == e0[5:]
    assert list(sampler) == e0  # only the pass after the resume is cut


def test_padding_rows_are_neutralised():
    collate = MarkPadding(lambda items: pad_batch(items, pad_id=0))
    item = Encoded(input_ids=[5, 6, 7], labels=[IGNORE, 6, 7], weight=2.0)
    batch = collate([(item, True, None), (item, False, None)])
    assert batch["real"].tolist() == [True, False] and "window_count" not in batch
    assert (batch["labels"][1] == IGNORE).all() and batch["weight"][1] == 0.0
    assert batch["labels"][0].tolist() == [IGNORE, 6, 7]
    assert collate([(item, True, 12.0), (item, False, 12.0)])["window_count"] == 12.0  # the accumulation window's


def test_a_loader_with_workers_started_by_spawn_gives_the_same_batches():
    """data.num_workers > 0 under the spawn start method (macOS, CUDA): the collate function must pickle."""
    items = [Encoded(input_ids=[1, 2, 3][: 1 + i % 3], labels=[1, 2, 3][: 1 + i % 3]) for i in range(6)]
    loaders = [sharded_loader(items, 4, shuffle=True, seed=0, collate=partial(pad_batch, pad_id=0), num_workers=n)
               for n in (0, 1)]
    loaders[1].multiprocessing_context = "spawn"
    plain, spawned = ([{k: v.tolist() for k, v in b.items()} for b in loader] for loader in loaders)
    assert plain == spawned and len(plain) == 2


def test_window_counts_sum_the_real_items_of_each_accumulation_window():
    """Counts 1..7 over global batches of 2 (the last holds one), windows of 2 batches: [1+2+3+4, 5+6+7]."""
    sampler = GlobalBatchSampler(7, 2, shuffle=False, counts=[1, 2, 3, 4, 5, 6, 7], window=2)
    assert list(sampler) == [[(0, 10.0), (1, 10.0)], [(2, 10.0), (3, 10.0)], [(4, 18.0), (5, 18.0)], [(6, 18.0)]]
    two = [list(GlobalBatchSampler(7, 2, rank=r, world_size=2, shuffle=False, counts=[1, 2, 3, 4, 5, 6, 7],
                                   window=2)) for r in (0, 1)]
    assert two[1][3] == [(-7, 18.0)]  # rank 1's padding copy of item 6 carries the window count, adds nothing


def test_fsdp_policy_wraps_the_models_decoder_layers(tiny_dir):
    from promptcot_pl.models import load_model
    from promptcot_pl.trainer import DecoderLayerPolicy

    model = load_model(tiny_dir)
    policy = DecoderLayerPolicy()
    assert policy(model, recurse=True, nonwrapped_numel=0)
    wrapped = [type(m).__name__ for m in model.modules() if policy(m, recurse=False, nonwrapped_numel=0)]
    assert wrapped == ["LlamaDecoderLayer"] * model.config.num_hidden_layers


def test_paper_recipes_pass_promptcot_check():
    recipes = sorted(str(p) for p in (REPO / "experiments/paper").glob("*.yaml"))
    assert len(recipes) >= 3
    proc = subprocess.run([sys.executable, "-m", "promptcot_pl", "check", *recipes], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok ") == len(recipes)
    from promptcot_pl.experiment import load_config

    for path in recipes:  # the paper's settings (SPEC §3–6)
        cfg = load_config(path)
        assert (cfg.trainer.strategy, cfg.trainer.precision, cfg.engine.backend) == ("fsdp", "bf16-mixed", "vllm")
        assert (cfg.coldstart.optim.lr, cfg.coldstart.epochs, cfg.coldstart.batch_size) == (2e-5, 2, 16)
        assert (cfg.em.k, cfg.em.e_optim.lr, cfg.em.m_optim.lr, cfg.em.batch_size) == (8, 2e-6, 2e-6, 16)
        if "selfplay" in cfg.stages:
            sp = cfg.selfplay
            assert (sp.optim.lr, sp.batch_size, sp.rollouts.temperature, sp.rollouts.n) == (1e-6, 16, 1.2, 8)
        if "sft" in cfg.stages:
            assert cfg.sft.optim.lr == 8e-5
            assert cfg.sft.batch_size * cfg.trainer.accumulate_grad_batches == 1024


def test_global_mean_equals_the_mean_on_one_process():
    import lightning as L

    from promptcot_pl.modules.reduce import global_mean

    total, count = torch.tensor(6.0, requires_grad=True), torch.tensor(4.0)
    loss, mean = global_mean(L.LightningModule(), total, count)
    assert loss.item() == mean.item() == 1.5


def test_a_fit_draws_a_new_order_every_epoch(tmp_path):
    """Lightning numbers each epoch on `batch_sampler.sampler`, not on the batch sampler itself: the sampler is its
    own `sampler`, so a 3-epoch fit through `build_trainer` trains on three orders of its items."""
    import lightning as L

    from promptcot_pl.config import TrainerConfig
    from promptcot_pl.trainer import build_trainer

    class Record(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[list[int]] = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch["input_ids"][:, 0].tolist())
            return (self.weight * 0).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = Record()
    loader = sharded_loader(list(range(12)), 4, shuffle=True, seed=0, collate=lambda items: {"input_ids": torch.tensor(items)[:, None]})
    build_trainer(TrainerConfig(enable_progress_bar=False), max_epochs=3, default_root_dir=tmp_path).fit(module, loader)
    epochs = [tuple(map(tuple, module.seen[e * 3:(e + 1) * 3])) for e in range(3)]
    assert len(module.seen) == 9 and len(set(epochs)) == 3, module.seen
