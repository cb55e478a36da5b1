#!/usr/bin/env bash
# One prepared visit to the GPU test machine (see ../shared/GPU.md): what the CUDA issue must show, in order of worth,
# each step time-boxed and its output written to $OUT as it goes, so a visit cut short keeps what it measured.
#   1. gpu-check: doctor on CUDA and the CPU (every gradient rule), then the same LoRA run on both (loss curves).
#   2. bench:gpu, the runs the goals compare: LoRA 316M and 1.03B in mixed precision against PyTorch + PEFT
#      bf16, full fine-tuning of the 316M in float32 against PyTorch float32.
# Usage (on that machine, through remote.sh): bash scripts/gpu-visit.sh [bench seconds]
set -uo pipefail
OUT=${OUT:-/tmp/gpu-visit}
mkdir -p "$OUT"
BENCH_S=${1:-300}
# The Python with torch + transformers + peft (the GPU machine keeps it in a virtualenv).
for p in /opt/torch/.venv/bin/python3 python3; do command -v "$p" > /dev/null && { export DELTA_STUDIO_PYTHON=$p; break; }; done
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  node --version
  ${DELTA_STUDIO_PYTHON:-python3} -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)' 2>&1 | tail -1
} > "$OUT/machine.txt" 2>&1
# Delta Studio finds the CUDA libraries itself: gpu-check runs without the LD_LIBRARY_PATH remote.sh sets by hand,
# and with TF32 off, so that CUDA's float32 is float32 and its loss curve comparable with the CPU's.
SAVED_LD=${LD_LIBRARY_PATH:-}
T0=$(date +%s)
env -u LD_LIBRARY_PATH NVIDIA_TF32_OVERRIDE=0 timeout 150 node --import tsx scripts/gpu-check.ts > "$OUT/gpu-check.log" 2>&1
echo "gpu-check (no LD_LIBRARY_PATH) exit $? after $(($(date +%s) - T0)) s" >> "$OUT/machine.txt"
if grep -q '"usable":true' "$OUT/gpu-check.log"; then unset LD_LIBRARY_PATH; else export LD_LIBRARY_PATH=$SAVED_LD; fi
echo "bench with LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-(unset)}" >> "$OUT/machine.txt"
T1=$(date +%s)
PICK=lora-316m/delta-studio/fp16,lora-316m/pytorch-peft/bf16,lora-1b/delta-studio/fp16,lora-1b/pytorch-peft/bf16
PICK=$PICK,full-316m/delta-studio/fp32,full-316m/pytorch-peft/fp32
timeout "$BENCH_S" node --import tsx bench/gpu.ts --warmup 2 --steps 6 --pick "$PICK" --log "$OUT/bench-runs.jsonl" \
  > "$OUT/bench-gpu.json" 2> "$OUT/bench-gpu.err"
echo "bench:gpu exit $? after $(($(date +%s) - T1)) s" >> "$OUT/machine.txt"
cat "$OUT/machine.txt"
