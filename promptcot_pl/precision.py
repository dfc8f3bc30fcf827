"""What `trainer.precision` means for a fit, beyond Lightning's defaults: half-precision compute never rounds the
numbers that must stay exact.

- **Buffers stay fp32.** RoPE's `inv_freq` is a buffer. Rounded to bf16 (relative error up to 2⁻⁹) it puts every
  rotary angle off by Δ·θ·ε, which grows with the distance Δ between tokens: about 1 rad at 1k tokens and 18 rad at
  16k with Qwen2.5's settings. The engines (vLLM, HF) compute the frequencies in fp32, so a fit or a scoring pass
  with bf16 buffers would train and score another position encoding than the one that samples. Lightning's FSDP
  policy for `bf16-mixed`/`16-mixed` casts buffers to the half dtype and reduces gradients in it
  (`MixedPrecision(param=half, reduce=half, buffer=half)`); `fsdp_mixed_precision` keeps buffers and the gradient
  reduce-scatter in fp32 and computes in the half dtype. For `bf16-true` Lightning converts the whole module
  (`module.to(bf16)`, buffers included); `KeepFP32Buffers*` converts parameters only.
- **Batches are not cast.** Under `*-true` Lightning casts every floating tensor of a batch to the half dtype. Ours
  hold counts (`window_count`), weights (the E-step's) and reference log-probs (DPO: −50.3 would become −50.25),
  which the modules read in fp32; the model itself takes token ids.

tests/test_fsdp_precision.py runs an FSDP `bf16-mixed` step through `build_trainer` and checks `inv_freq` and the
scored log-probs; Lightning does the rest (`FSDPPrecision`, `HalfPrecision`, torch's `MixedPrecision`).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.precision import FSDPPrecision, HalfPrecision
from torch import nn

HALF = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "bf16-true": torch.bfloat16}


def fsdp_mixed_precision(precision: str) -> Any:
    """torch FSDP's `MixedPrecision` for `precision`: compute in the half dtype, reduce gradients and keep buffers in
    fp32; None for 32-true (no casting at all)."""
    from torch.distributed.fsdp import MixedPrecision

    half = HALF.get(precision)
    if half is None:
        return None
    return MixedPrecision(param_dtype=half, reduce_dtype=torch.float32, buffer_dtype=torch.float32)


def _parameters_to(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    for parameter in module.parameters():
        if parameter.is_floating_point():
            parameter.data = parameter.data.to(dtype)
    return module


class KeepFP32Buffers(HalfPrecision):
    """Lightning's `bf16-true` on one device or DDP, with fp32 buffers and batches left as they are."""

    def convert_module(self, module: nn.Module) -> nn.Module:
        return _parameters_to(module, self._desired_input_dtype)

    def convert_input(self, data: Any) -> Any:
        return data


class KeepFP32BuffersFSDP(FSDPPrecision):
    """Lightning's FSDP `bf16-true`, with fp32 buffers and batches left as they are (the strategy gets its
    `MixedPrecision` from `fsdp_mixed_precision`)."""

    def convert_module(self, module: nn.Module) -> nn.Module:
        return _parameters_to(module, self._desired_input_dtype) if "true" in self.precision else module

    def convert_input(self, data: Any) -> Any:
        return data


def precision_plugin(precision: str, fsdp: bool) -> HalfPrecision | FSDPPrecision | None:
    """The plugin `build_trainer` passes for `precision`, or None where Lightning's own is right (32-true, and the
    mixed precisions, whose autocast keeps buffers in fp32 and whose inputs Lightning does not cast)."""
    if precision != "bf16-true":
        return None
    return KeepFP32BuffersFSDP("bf16-true") if fsdp else KeepFP32Buffers("bf16-true")
