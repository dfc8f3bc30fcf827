"""Run under `torchrun --nproc-per-node=2` by tests/test_process_group_exit.py: does leaving `distributed.joined()`
free the gloo process group, even when torch.distributed.nn.functional is first imported after the group exists (as
`import lightning` does, through torchmetrics)? A group that survives keeps its worker threads into the
interpreter's teardown, where one that still holds a tensor aborts the process (SIGABRT) after a run that
succeeded. Writes the thread counts of rank 0 as JSON to argv[1]."""

from __future__ import annotations

import json
import os
import sys


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


if __name__ == "__main__":
    import torch.distributed as dist

    from promptcot_pl import distributed

    before = threads()
    with distributed.joined():
        inside = threads()
        import torch.distributed.nn.functional  # noqa: F401  (first imported now, as `import lightning` does)

        objects = [distributed.rank()]
        dist.broadcast_object_list(objects, src=0)
    after = threads()
    if distributed.is_zero():
        with open(sys.argv[1], "w") as handle:
            json.dump({"before": before, "inside": inside, "after": after, "received": objects[0],
                       "initialized": dist.is_initialized()}, handle)
