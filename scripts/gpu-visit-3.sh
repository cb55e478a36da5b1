#!/usr/bin/env bash
# The next visit (prepared 2026-12-04, in sessions without a GPU): the goals first, in case the session's
# device time (15 minutes, start-up included) runs out before the second call.
#   call 1: both LoRA configs in mixed precision — fused attention (flash), the loss on float16 logits, the state on
#      the device — against PyTorch + PEFT bf16 (goal: ≥ 1× its tokens/s, ≤ 1.5× its memory); then full fine-tuning
#      of the 316M in float32 with the state on the device against PyTorch float32 (goal: ≥ 50% of its tokens/s).
#   call 2: gpu-check's step agreement (each CUDA step taken again on the CPU from the same state, TF32 off; doctor
#      --json inside it: device_state, fused_attention with its gradients), a profile of the 316M LoRA run (its top
#      nodes say whether onnxruntime fused the attention gradient's mask and softmax: BiasSoftmax rather than
#      Add + Softmax), and the 316M LoRA with attention explicit (what fused attention is compared with).
# Each call is under the 600 s a call may take: `bash scripts/gpu-visit-3.sh 1`, then `… 2`.
# The addon is built here (npm install); it is ignored by git, so each run call must carry it:
#   carry ["native/runtime/resident/build"], then: bash /root/w/remote.sh 'bash scripts/gpu-visit-3.sh 1'
set -uo pipefail
OUT=${OUT:-/tmp/gpu-visit}
mkdir -p "$OUT"
for p in /opt/torch/.venv/bin/python3 python3; do command -v "$p" > /dev/null && { export DELTA_STUDIO_PYTHON=$p; break; }; done
unset LD_LIBRARY_PATH
PHASE=${1:-1}
if [ "$PHASE" = 1 ]; then
T0=$(date +%s)
timeout 30 node bin/delta-studio.js gpu > "$OUT/gpu.txt" 2>&1
PICK=lora-316m/delta-studio/fp16,lora-316m/pytorch-peft/bf16,lora-1b/delta-studio/fp16,lora-1b/pytorch-peft/bf16
timeout 360 node --import tsx bench/gpu.ts --warmup 2 --steps 6 --only lora-316m,lora-1b --pick "$PICK" \
  --log "$OUT/bench-runs-3.jsonl" > "$OUT/bench-gpu-3-lora.json" 2> "$OUT/bench-gpu-3-lora.err"
echo "lora 316M and 1.03B, fused, resident: exit $? after $(($(date +%s) - T0)) s" > "$OUT/visit-3.txt"
T1=$(date +%s)
PICK=full-316m/delta-studio/fp32,full-316m/pytorch-peft/fp32
timeout 190 node --import tsx bench/gpu.ts --warmup 2 --steps 6 --only full-316m --pick "$PICK" --resident on \
  --log "$OUT/bench-runs-3.jsonl" > "$OUT/bench-gpu-3-full-resident.json" 2> "$OUT/bench-gpu-3-full-resident.err"
echo "full, resident: exit $? after $(($(date +%s) - T1)) s" >> "$OUT/visit-3.txt"
cat "$OUT/visit-3.txt" "$OUT/gpu.txt"
exit 0
fi
T2=$(date +%s)
env NVIDIA_TF32_OVERRIDE=0 timeout 200 node --import tsx scripts/gpu-check.ts > "$OUT/gpu-check.log" 2>&1
echo "gpu-check exit $? after $(($(date +%s) - T2)) s" >> "$OUT/visit-3.txt"
T3=$(date +%s)
mkdir -p "$OUT/profile"
timeout 120 node --import tsx bench/gpu.ts --warmup 2 --steps 4 --only lora-316m --pick lora-316m/delta-studio/fp16 \
  --profile "$OUT/profile" > "$OUT/bench-gpu-3-lora-profile.json" 2> "$OUT/bench-gpu-3-lora-profile.err"
echo "lora, profiled: exit $? after $(($(date +%s) - T3)) s" >> "$OUT/visit-3.txt"
rm -rf "$OUT/profile"
T4=$(date +%s)
timeout 120 node --import tsx bench/gpu.ts --warmup 2 --steps 6 --only lora-316m --pick lora-316m/delta-studio/fp16 \
  --attention explicit --log "$OUT/bench-runs-3.jsonl" > "$OUT/bench-gpu-3-lora-explicit.json" 2> "$OUT/bench-gpu-3-lora-explicit.err"
echo "lora, attention explicit: exit $? after $(($(date +%s) - T4)) s" >> "$OUT/visit-3.txt"
cat "$OUT/visit-3.txt"
