// What a delta costs, without training: modules it touches, parameters it trains, the size of its plugin file and
// an estimate of training memory.
import { safetensorsSize } from '../onnx/safetensors.js';
import type { BuiltModel } from '../models/types.js';
import type { AppliedDelta } from './index.js';

export interface DeltaReport {
  matched_modules: { name: string; methods: string[] }[];
  trainable_params: number;
  /** Of the backbone's parameters (the folder's weights). */
  trainable_percent: number;
  backbone_params: number;
  /** Bytes of the plugin file: the trainable tensors in float32 with their metadata, as safetensors. */
  plugin_bytes: number;
  estimated_train_memory_bytes: number;
  /** What the estimate assumed. */
  estimate: { batch: number; seq: number; weights_bytes: number; optimizer_bytes: number; activation_bytes: number };
  by_method: Record<string, number>;
}

/**
 * Training memory ≈ the frozen weights (read in place; float16/bfloat16 weights also get a float32 copy)
 * + 16 bytes per trainable parameter (value, gradient, two AdamW moments)
 * + activations kept for the backward pass: per block about 68·B·S·D + 10·B·H·S² bytes in float32 (Korthikanti
 *   et al. 2022's 34·B·S·D + 5·B·H·S² for 16-bit activations, doubled), plus 12·B·S·V for an LM head's logits,
 *   their softmax and gradient.
 */
export function deltaReport(
  model: BuiltModel,
  applied: AppliedDelta,
  opts: { batch?: number; seq?: number; metadata?: Record<string, string> } = {},
): DeltaReport {
  const B = opts.batch ?? 8,
    S = opts.seq ?? 128;
  const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1);
  const trainable = applied.params.map((p) => ({
    name: p.name,
    dtype: 'float32' as const,
    shape: applied.initial[p.value].shape,
    method: p.method,
  }));
  const count = trainable.reduce((a, t) => a + numel(t.shape), 0);
  let backbone = 0,
    weightsBytes = 0;
  for (const ref of model.builder.folder.weights.values()) {
    const n = numel(ref.shape);
    backbone += n;
    weightsBytes += ref.length + (ref.dtype === 'float32' ? 0 : 4 * n);
  }
  const { hidden: D, layers: L, heads: H, vocab: V } = model.dims;
  const lmHead = model.task === 'causal-lm' || model.task === 'seq2seq';
  const activation = L * (68 * B * S * D + 10 * B * H * S * S) + (lmHead ? 12 * B * S * V : 0);
  const optimizer = 16 * count;
  const byMethod: Record<string, number> = {};
  for (const t of trainable) byMethod[t.method] = (byMethod[t.method] ?? 0) + numel(t.shape);
  const metadata = opts.metadata ?? {
    format: 'delta-studio-plugin',
    methods: JSON.stringify(applied.methods.map((m) => m.config)),
  };
  return {
    matched_modules: [...applied.marked.entries()].map(([name, methods]) => ({ name, methods })),
    trainable_params: count,
    trainable_percent: (100 * count) / backbone,
    backbone_params: backbone,
    plugin_bytes: safetensorsSize(trainable, metadata),
    estimated_train_memory_bytes: weightsBytes + optimizer + activation,
    estimate: {
      batch: B,
      seq: S,
      weights_bytes: weightsBytes,
      optimizer_bytes: optimizer,
      activation_bytes: activation,
    },
    by_method: byMethod,
  };
}
