#!/usr/bin/env bash
# The second visit of 2026-12-04: the LoRA configs again with CUDA's new default recomputation (every kind), against
# PyTorch + PEFT bf16 in the same run, with onnxruntime's kernel time per op type for Delta Studio's runs.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-visit}
mkdir -p "$OUT/profile"
for p in /opt/torch/.venv/bin/python3 python3; do command -v "$p" > /dev/null && { export DELTA_STUDIO_PYTHON=$p; break; }; done
unset LD_LIBRARY_PATH
PICK=lora-316m/delta-studio/fp16,lora-316m/pytorch-peft/bf16,lora-1b/delta-studio/fp16,lora-1b/pytorch-peft/bf16
timeout "${1:-250}" node --import tsx bench/gpu.ts --warmup 2 --steps 6 --only lora-316m,lora-1b --pick "$PICK" \
  --profile "$OUT/profile" --log "$OUT/bench-runs-2.jsonl" > "$OUT/bench-gpu-2.json" 2> "$OUT/bench-gpu-2.err"
echo "bench:gpu exit $?"
rm -rf "$OUT/profile"
