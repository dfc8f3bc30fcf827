"""Generation behind one interface: `build_engine(cfg, model_path)` is the single switch between backends."""

from __future__ import annotations

from pathlib import Path

from promptcot_pl.config.schema import EngineConfig, SamplingConfig
from promptcot_pl.generation.engine import Completion, Engine, ServedEngine


def build_engine(cfg: EngineConfig, model_path: str | Path, dtype: str = "float32", seed: int = 0) -> Engine:
    match cfg.backend:
        case "hf":
            from promptcot_pl.generation.hf import HFEngine

            return HFEngine(model_path, cfg, dtype)
        case "vllm":
            from promptcot_pl.generation.vllm_engine import VLLMEngine

            return VLLMEngine(model_path, cfg, dtype, seed)
    raise ValueError(f"engine.backend {cfg.backend!r}: expected 'hf' or 'vllm'")


__all__ = ["Completion", "Engine", "EngineConfig", "SamplingConfig", "ServedEngine", "build_engine"]
