"""Run under `torchrun --nproc-per-node=2` by tests/test_process_group_exit.py: does leaving `distributed.joined()`
free the gloo process group when Lightning is first imported after the group exists, as the pipeline's stages do?
(`import lightning` imports torch.distributed.nn.functional, whose functions take the world group as a default
argument.) A group that survives keeps its worker threads into the interpreter's teardown, where one that still
holds a tensor aborts the process (SIGABRT) after a run that succeeded. Writes rank 0's thread counts as JSON to
argv[1]."""

from __future__ import annotations

import json
import os
import sys


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


if __name__ == "__main__":
    import weakref

    import torch.distributed as dist

    from promptcot_pl import distributed

    before = threads()
    with distributed.joined():
        started = threads() - before  # the group's own threads: nothing else runs between
        world = weakref.ref(dist.group.WORLD)
        import lightning  # noqa: F401  (first imported now, as the stages do; it may start threads of its own)

        objects = [distributed.rank()]
        dist.broadcast_object_list(objects, src=0)
        last = threads()
    ended = last - threads()
    if distributed.is_zero():
        with open(sys.argv[1], "w") as handle:
            json.dump({"started": started, "ended": ended, "group_alive": world() is not None,
                       "received": objects[0], "initialized": dist.is_initialized()}, handle)
