#!/usr/bin/env bash
# GPU check, under 4 minutes on one H100: FSDP bf16 train step of a ~0.5B random Qwen2-style model (tokens/s, MFU),
# HF generate tokens/s, and the vLLM engine when installed. Run from the repository root with the venv active:
#   bash bench/gpu_check.sh            (add --smoke to try it on CPU in seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 600 torchrun --standalone --nproc-per-node 1 bench/gpu_check.py "$@"
