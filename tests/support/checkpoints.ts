// Variants of the committed model fixtures as other checkpoints on the Hub are laid out, derived by renaming tensors
// (no Python): saved from the bare backbone class (GPT2Model: h.0.… for transformer.h.0.…, BertModel, LlamaModel),
// or with some tensors left out (a checkpoint without a task head or pooler).
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DType } from '../../native/onnx/dtype.js';
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../../native/onnx/safetensors.js';

/** The backbone prefix each family's task classes use (transformers' base_model_prefix). */
export const BACKBONE_PREFIX: Record<string, string> = {
  bert: 'bert.',
  roberta: 'roberta.',
  gpt2: 'transformer.',
  llama: 'model.',
  qwen2: 'model.',
};

/**
 * Copies the fixture at `src` to `dest` with each tensor renamed by `rename` (undefined: left out), keeping its
 * dtype, bytes and shard layout (and the index, when there is one), and every other file (config, tokenizer).
 */
export function deriveCheckpoint(
  src: string,
  dest: string,
  rename: (name: string) => string | undefined,
  keepFile: (file: string) => boolean = () => true,
): string {
  if (existsSync(dest)) return dest;
  mkdirSync(dest, { recursive: true });
  const shards = readdirSync(src).filter((f) => /^model(-\d+-of-\d+)?\.safetensors$/.test(f));
  for (const f of readdirSync(src))
    if (!shards.includes(f) && f !== 'model.safetensors.index.json' && keepFile(f))
      copyFileSync(join(src, f), join(dest, f));
  const weightMap: Record<string, string> = {};
  for (const shard of shards) {
    const h = readSafetensorsHeader(join(src, shard));
    const out: Record<string, { dtype: DType; shape: number[]; data: Uint8Array }> = {};
    for (const [name, ref] of h.tensors) {
      const to = rename(name);
      if (to === undefined) continue;
      Object.defineProperty(out, to, {
        value: { dtype: ref.dtype, shape: ref.shape, data: readTensorBytes(ref) },
        enumerable: true,
      });
      weightMap[to] = shard;
    }
    writeSafetensors(join(dest, shard), out, h.metadata);
  }
  const index = join(src, 'model.safetensors.index.json');
  if (existsSync(index)) {
    const idx = JSON.parse(readFileSync(index, 'utf8')) as { metadata?: unknown };
    writeFileSync(
      join(dest, 'model.safetensors.index.json'),
      JSON.stringify({ ...idx, weight_map: weightMap }, null, 2),
    );
  }
  return dest;
}

/** The fixture `family` as saved from its bare backbone class: every name without the backbone prefix. */
export function withoutBackbonePrefix(
  fixtures: string,
  family: string,
  dest: string,
  keepFile?: (file: string) => boolean,
): string {
  const pre = BACKBONE_PREFIX[family];
  if (!pre) throw new Error(`no backbone prefix for ${family}`);
  return deriveCheckpoint(join(fixtures, family), dest, (n) => (n.startsWith(pre) ? n.slice(pre.length) : n), keepFile);
}
