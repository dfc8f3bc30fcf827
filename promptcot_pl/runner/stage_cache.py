"""Finished stages shared between runs whose settings for them are equal (the trials of one sweep).

A sweep over EM hyperparameters runs the same `seed` and `coldstart` in every trial; a sweep over reward
hyperparameters would rerun everything up to synthesis. Instead, a finished stage is published under
`<cache>/<stage>-<digest>/` and a later run with the same digest copies it (hard links where the filesystem
allows, so model files are not duplicated) instead of recomputing it.

The digest of stage i covers every setting except how the run is named and how it runs (`config.HOW_TO_RUN`: the
stages listed, tracking, processes, logging — the same list a resumed run may change),
and except the sections of the stages after i (`STAGE_NAMES` order: a stage reads only its own section, the
shared ones — seed, model, domain, data, trainer, engine — and the outputs of the stages before it). That is
conservative: two runs share a stage only when nothing that could change it differs.
Publishing is a copy into a temporary sibling then a rename, so a reader never sees half a stage; when two
workers publish the same stage at once the first rename wins and the second copy is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from promptcot_pl.config import HOW_TO_RUN, STAGE_NAMES, flatten
from promptcot_pl.data.atomic import atomic_dir

if TYPE_CHECKING:  # annotation only: the experiment config sits above this floor (docs/architecture.md)
    from promptcot_pl.experiment import ExperimentConfig

NOT_RESULTS = ("name", "run_name", "output_dir", *HOW_TO_RUN)  # the run's identity and how it runs
# Raised when the same settings compute other results, so no cache entry made before is reused.
# 2: every epoch of a fit draws its own order (before, each repeated epoch 0's; data/sharding.py).
RESULTS_VERSION = 2


def stage_digest(cfg: ExperimentConfig, stage: str) -> str:
    later = tuple(f"{s}." for s in STAGE_NAMES[STAGE_NAMES.index(stage) + 1:])
    settings = {k: v for k, v in flatten(cfg).items()
                if not (k in NOT_RESULTS or k.startswith(NOT_RESULTS) or k.startswith(later))}
    settings["results_version"] = str(RESULTS_VERSION)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _copy(src: Path, dst: Path) -> None:
    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:  # another filesystem, or links not allowed
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy, symlinks=True, dirs_exist_ok=True)


class StageCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry(self, cfg: ExperimentConfig, stage: str) -> Path:
        return self.root / f"{stage}-{stage_digest(cfg, stage)}"

    def restore(self, cfg: ExperimentConfig, stage: str, stage_dir: Path) -> Path | None:
        """Fill `stage_dir` from the cache; return the entry used, or None when there is none."""
        entry = self.entry(cfg, stage)
        if not (entry / "DONE").is_file():
            return None
        shutil.rmtree(stage_dir, ignore_errors=True)  # leftovers of an interrupted attempt
        _copy(entry, stage_dir)
        return entry

    def publish(self, cfg: ExperimentConfig, stage: str, stage_dir: Path) -> None:
        entry = self.entry(cfg, stage)
        if (entry / "DONE").is_file():
            return
        # published meanwhile by another worker: theirs wins
        atomic_dir(entry, lambda tmp: _copy(stage_dir, tmp), replace=False)
