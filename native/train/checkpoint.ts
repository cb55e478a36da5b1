// Checkpoints: trainable parameters, AdamW moments, the step count and everything needed to continue the data order
// and randomness, in one safetensors file written atomically, with a pointer file naming the latest one.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic.js';
import { viewAs } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../onnx/safetensors.js';

export interface TrainerState {
  /** Optimizer steps taken. */
  step: number;
  epoch: number;
  /** Next batch of the epoch's plan. */
  cursor: number;
  params: Record<string, HostTensor>;
  m: Record<string, HostTensor>;
  v: Record<string, HostTensor>;
  /** Anything else the trainer needs to continue (RNG state, best metric, early-stopping patience…), JSON. */
  extra: Record<string, unknown>;
}

const file = (step: number): string => `step-${String(step).padStart(8, '0')}.safetensors`;

/** Checkpoints kept in a run's folder: the newest and the one before it. */
export const KEPT_CHECKPOINTS = 2;

/**
 * About how many bytes a run writes from here to its end, at its peak: its checkpoints (parameters and both AdamW
 * moments, float32; one more than are kept while the newest is written), the delta, the best delta and the plugin, its
 * metric rows in the workspace database, and a little for the database's journal and the log.
 */
export function runDiskNeed(run: { trainableParams: number; steps: number }): number {
  const delta = run.trainableParams * 4;
  const metrics = run.steps * 4 * 200; // four series a step: a row, its index entry and its journal copy
  return 3 * delta * (KEPT_CHECKPOINTS + 1) + 3 * delta + metrics + 64 * 1024;
}

export function saveCheckpoint(dir: string, s: TrainerState, keep = KEPT_CHECKPOINTS): string {
  mkdirSync(dir, { recursive: true });
  const tensors: Record<string, HostTensor> = {};
  for (const [k, t] of Object.entries(s.params)) tensors[`param/${k}`] = t;
  for (const [k, t] of Object.entries(s.m)) tensors[`adam_m/${k}`] = t;
  for (const [k, t] of Object.entries(s.v)) tensors[`adam_v/${k}`] = t;
  const name = file(s.step);
  writeSafetensors(join(dir, name), tensors, {
    state: JSON.stringify({ step: s.step, epoch: s.epoch, cursor: s.cursor, extra: s.extra }),
  });
  // The pointer moves only once the checkpoint is complete on disk.
  writeFileAtomic(join(dir, 'latest.json'), new TextEncoder().encode(JSON.stringify({ file: name, step: s.step })));
  const old = readdirSync(dir)
    .filter((f) => /^step-\d+\.safetensors$/.test(f) && f !== name)
    .sort();
  for (const f of old.slice(0, Math.max(0, old.length - (keep - 1)))) rmSync(join(dir, f), { force: true });
  return join(dir, name);
}

export function loadCheckpoint(dir: string): TrainerState | undefined {
  const ptr = join(dir, 'latest.json');
  if (!existsSync(ptr)) return undefined;
  let latest: { file: string };
  try {
    latest = JSON.parse(readFileSync(ptr, 'utf8'));
  } catch (e) {
    throw new Error(`${ptr}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  const h = readSafetensorsHeader(join(dir, latest.file));
  if (!h.metadata.state) throw new Error(`${h.file}: not a Delta Studio checkpoint (no state metadata)`);
  const meta = JSON.parse(h.metadata.state) as {
    step: number;
    epoch: number;
    cursor: number;
    extra: Record<string, unknown>;
  };
  const s: TrainerState = {
    step: meta.step,
    epoch: meta.epoch,
    cursor: meta.cursor,
    extra: meta.extra,
    params: {},
    m: {},
    v: {},
  };
  for (const [name, ref] of h.tensors) {
    const t: HostTensor = { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, readTensorBytes(ref)) };
    const [kind, ...rest] = name.split('/');
    const key = rest.join('/');
    if (kind === 'param') s.params[key] = t;
    else if (kind === 'adam_m') s.m[key] = t;
    else if (kind === 'adam_v') s.v[key] = t;
  }
  return s;
}
