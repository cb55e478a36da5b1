// Plugins without training: a delta config applied to a fixture, its parameters set to seeded random values that move
// the outputs visibly, written as a .delta file and read back.
import { basename } from 'node:path';
import { loadWithDeltas, parseDeltaConfig } from '../../native/delta/index.js';
import type { HostTensor } from '../../native/onnx/graph.js';
import type { Task } from '../../native/models/index.js';
import { modelFingerprint, readPlugin, writePlugin, type Plugin } from '../../native/plugins/format.js';
import { Rng } from '../../native/rng.js';

export interface SeededPluginOptions {
  labels?: string[];
  metrics?: Record<string, number>;
  /** Spread of the values (default 0.3; (IA)³ vectors are 1 + that). */
  scale?: (param: string) => number;
  /** Changes the tensors before they are written (a crafted file). */
  edit?: (tensors: Record<string, HostTensor>) => void;
}

/** Writes `file`: `raw`'s methods on the model at `dir` for `task`, with values drawn from `seed`. */
export function seededPlugin(
  file: string,
  dir: string,
  task: Task,
  raw: unknown,
  seed: number,
  opts: SeededPluginOptions = {},
): Plugin {
  const methods = parseDeltaConfig(raw);
  const { model, applied } = loadWithDeltas(dir, { task, numLabels: opts.labels?.length }, methods);
  const rng = new Rng(seed);
  // Any parameter name is a key, as the readers keep them.
  const tensors = Object.create(null) as Record<string, HostTensor>;
  for (const p of applied.params) {
    const init = applied.initial[p.value];
    const base = p.name.endsWith('.ia3_l') ? 1 : 0;
    const scale = opts.scale?.(p.name) ?? 0.3;
    tensors[p.name] = {
      dtype: 'float32',
      shape: [...init.shape],
      data: Float32Array.from({ length: init.data.length }, () => base + scale * rng.normal()),
    };
  }
  opts.edit?.(tensors);
  writePlugin(
    file,
    {
      methods,
      task,
      labels: opts.labels,
      base: { fingerprint: modelFingerprint(dir), modelType: model.modelType, name: basename(dir) },
      metrics: opts.metrics ?? {},
      createdAt: '2024-01-01T00:00:00.000Z',
    },
    tensors,
  );
  return readPlugin(file);
}
