"""Generation behind one interface: `build_engine(cfg, model_path)` is the single switch between backends.

In a multi-process run every rank builds an engine and generation is data-parallel: the HF engine runs every
world_size-th of the batches it would run alone (same batches, same seeds: the gathered completions equal the
single-process ones exactly); vLLM engines each take every world_size-th prompt (`DataParallelEngine`).
"""

from __future__ import annotations

from pathlib import Path

from promptcot_pl.config import EngineConfig, SamplingConfig
from promptcot_pl.generation.engine import Completion, DataParallelEngine, Engine, ServedEngine


def build_engine(cfg: EngineConfig, model_path: str | Path, dtype: str = "float32", seed: int = 0) -> Engine:
    match cfg.backend:
        case "hf":
            from promptcot_pl.generation.hf import HFEngine

            return HFEngine(model_path, cfg, dtype)
        case "vllm":
            from promptcot_pl import distributed
            from promptcot_pl.generation.vllm_engine import VLLMEngine

            engine = VLLMEngine(model_path, cfg, dtype, seed)
            return DataParallelEngine(engine) if distributed.world_size() > 1 else engine
    raise ValueError(f"engine.backend {cfg.backend!r}: expected 'hf' or 'vllm'")


__all__ = ["Completion", "DataParallelEngine", "Engine", "EngineConfig", "SamplingConfig", "ServedEngine", "build_engine"]
