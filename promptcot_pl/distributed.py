"""Multi-process runs: who am I, meet the others, share results. `torch.distributed` does the work.

`promptcot run` under `torchrun --nproc-per-node N` or `fabric run --devices N` starts N copies of the whole
pipeline. They split the work this way:

- every rank runs every stage's code with the same inputs, so they take the same branches;
- generation, scoring and verification are sharded across ranks and gathered (`shard`, `gather_shards`), so
  every rank holds the full results afterwards;
- fits run under Lightning's DDP or FSDP strategy in the same process group;
- only rank 0 writes files and talks to MLflow (`on_rank_zero`), and every write sits between two barriers, so
  a file check on any rank sees the same state as on the others.

The process group is initialised once, before the first stage, from the launcher's environment (RANK,
WORLD_SIZE, MASTER_ADDR, ...); Lightning then reuses it. Without a launcher every helper is a cheap no-op.
"""

from __future__ import annotations

import gc
import importlib
import os
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
# Modules whose functions take `group=dist.group.WORLD` as a default argument, bound when the module is imported.
# Imported after `init` (`import lightning` imports the first through torchmetrics, and the stages import Lightning
# late; Lightning's FSDP imports the second), they would hold the world group for the life of the process and
# `shutdown` could not free it, so `init` imports them first.
BIND_WORLD_AT_IMPORT = ("torch.distributed.nn.functional", "torch.distributed.fsdp.sharded_grad_scaler",
                        "torch.distributed.optim.zero_redundancy_optimizer")
KEPT = "the process group is still referenced after it was destroyed"  # `shutdown`'s warning starts so
_writing = False  # inside an `on_rank_zero` call on rank 0


def launched() -> bool:
    """True in a process started by a launcher with more than one process in the world."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def is_zero() -> bool:
    return rank() == 0


def local_world() -> tuple[int, int]:
    """(processes on this node, nodes) as the launcher set them up."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return local, max(1, world_size() // local)


def init(timeout_s: float = 1800.0) -> None:
    """Join the launcher's process group (idempotent). GPU runs use NCCL for tensors and gloo for Python
    objects (gathered generation results); CPU runs use gloo for both."""
    if not launched() or dist.is_initialized():
        return
    for module in BIND_WORLD_AT_IMPORT:  # before the group exists, so their defaults are None
        importlib.import_module(module)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (idempotent), so that its worker threads are joined while Python is still alive.

    Why it matters: a gloo worker thread drops the tensors of the collective it just finished *after* the caller's
    `wait()` has returned, and dropping a tensor that has a Python object needs the GIL. If the interpreter is
    already finalising, that thread is killed inside a C++ destructor and the process aborts (SIGABRT, "terminate
    called without an active exception") after a run that succeeded — seen in CI, about one 2-process run in seven.
    `destroy_process_group` frees the group and joins its threads with the GIL released, but only when nothing else
    holds the group (see BIND_WORLD_AT_IMPORT); if something still does, say so."""
    if not dist.is_initialized():
        return
    world = weakref.ref(dist.group.WORLD)
    dist.destroy_process_group()
    if world() is not None:
        gc.collect()  # a reference cycle (a module and its hooks) may be all that holds it
    if world() is not None:
        warnings.warn(f"{KEPT}, so its threads live on into the interpreter's teardown, where they can abort a "
                      "run that succeeded (SIGABRT); a module imported after distributed.init() may hold it as a "
                      "default argument (see promptcot_pl.distributed.BIND_WORLD_AT_IMPORT)",
                      RuntimeWarning, stacklevel=2)


@contextmanager
def joined(timeout_s: float = 1800.0) -> Iterator[None]:
    """The body runs inside the launcher's process group (a no-op without a launcher). On success every rank meets
    at a barrier before leaving, so that no rank tears down the group while a peer is still in its last
    collective; on an error the rank leaves at once, without waiting for peers that may never come."""
    init(timeout_s)
    try:
        yield
    except BaseException:
        shutdown()
        raise
    barrier()
    shutdown()


def on_rank_zero(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call `fn` on rank 0 only, between two barriers: before it, so that every rank has finished looking at the
    files `fn` changes (a rank that lags behind must not see a later state than the others — that is how ranks
    take different branches and deadlock); after it, so that every rank sees what it wrote. Every rank must make
    the same calls in the same order (they do: all run the same stage code on the same data). Calls nested
    inside `fn` (a writer that uses another writer) run directly."""
    global _writing
    if _writing:
        return fn(*args, **kwargs)
    barrier()
    result = None
    error: BaseException | None = None
    if is_zero():
        _writing = True
        try:
            result = fn(*args, **kwargs)
        except BaseException as err:  # still meet the others, or they wait for the full timeout
            error = err
        finally:
            _writing = False
    if dist.is_initialized():
        failed = [error is not None]
        dist.broadcast_object_list(failed, src=0)
        if error is not None:
            raise error
        if failed[0]:
            raise RuntimeError("rank 0 failed while writing; see its log")
    elif error is not None:
        raise error
    return result


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over every rank (itself in one process). Unlike Lightning's `strategy.reduce`, which waits at
    a barrier before every reduce, nothing here stops the host: on NCCL the sum is queued on the GPU stream, so a
    step's metrics and token counts cost no host sync."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out)
    return out


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of `items`: every world_size-th item, starting at its rank."""
    return list(items[rank()::world_size()])


def gather_shards(mine: Sequence[T], total: int) -> list[T]:
    """Undo `shard`: the results of every rank's share, back in the order of the full list of `total` items."""
    parts = gather_objects(list(mine))
    out: list[Any] = [None] * total
    for r, part in enumerate(parts):
        out[r::len(parts)] = part
    return out


def sharded_map(fn: Callable[[list[T]], list[Any]], items: Sequence[T]) -> list[Any]:
    """`fn(items)`, computed as `fn(shard)` on every rank and gathered (fn maps a list to a list, item by item)."""
    if world_size() == 1:
        return fn(list(items))
    return gather_shards(fn(shard(items)), len(items))
