#!/usr/bin/env bash
# The networks benchmark on a GPU, in one go (issue #14): SaShiMi-Diff and CQT-Diff at their
# reference presets, batch 1 and 8, float32 and bf16 matrix products (FFTs stay float32).
#
#   bash experiments/gpu_networks.sh [OUT_DIR]     # JSON lines in OUT_DIR (default: gpu_networks)
#
# Needs JAX with CUDA (`pip install -e .[cuda12]`); run it from the repository root.
set -euo pipefail
out="${1:-gpu_networks}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" || true
for batch in 1 8; do
  for precision in float32 bfloat16; do
    python -m experiments.benchmark --platform=gpu --sections=networks \
      --models=sashimi:reference,cqtdiff:reference,sashimi:cpu --batch="$batch" \
      --matmul_precision="$precision" --repeats=5 --restore_steps=2 \
      > "$out/networks_b${batch}_${precision}.jsonl"
  done
done
python experiments/network_timing.py sashimi:cpu 4096 16 5 --train > "$out/train_cpu.jsonl"
