#!/usr/bin/env bash
# GPU check, under 8 minutes on one GPU: an FSDP bf16 fit step of a ~0.5B Qwen2-shaped model through the real
# DataModule (tokens/s, MFU, peak memory, RoPE dtype), an engine refresh after a fit (vLLM), and the whole debug
# pipeline with the vLLM engine (each stage's wall time); one table with the date. Run from the repository root
# with the venv active:
#   bash bench/gpu_check.sh            (add --smoke to run it on CPU in about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 480 python bench/gpu_check.py "$@"
