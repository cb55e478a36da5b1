// One measurement of a BERT-base-shaped classifier with a low-rank branch on query/value, read from a model folder
// of random weights: time from folder to first finished step, forward ms, train-step ms, peak RSS. One JSON line.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostTensor } from '../native/onnx/graph.js';
import { writeSafetensors, type TensorData } from '../native/onnx/safetensors.js';
import { loadModel } from '../native/models/index.js';
import { openInline } from '../native/runtime/host.js';
import { Rng } from '../native/rng.js';
import { StepRunner } from '../native/train/runner.js';
import { buildTrainStep } from '../native/train/step.js';
import { addLowRank } from '../tests/support/lowrank.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const L = arg('layers', 12),
  D = arg('hidden', 768),
  H = arg('heads', 12),
  F = arg('intermediate', 3072),
  V = arg('vocab', 30522);
const B = arg('batch', 8),
  S = arg('seq', 128),
  R = arg('rank', 8),
  ALPHA = arg('alpha', 16),
  threads = arg('threads', 2);
const warmup = arg('warmup', 2),
  iters = arg('iters', 5);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rng = new Rng(3);

// A BERT-base-shaped folder of random weights, as a user's would be on disk: made by a first run of this script
// (--make), so that the measured run's peak RSS is its own.
const makeAt = process.argv.indexOf('--make');
const dirAt = process.argv.indexOf('--dir');
const dir = makeAt >= 0 ? mkdtempSync(join(tmpdir(), 'ds-bert-')) : process.argv[dirAt + 1];
if (makeAt < 0 && dirAt < 0) throw new Error('bert-ort.ts: pass --make (write a folder) or --dir <folder> (measure)');
if (makeAt >= 0) {
  const shapes: Record<string, number[]> = {
    'bert.embeddings.word_embeddings.weight': [V, D],
    'bert.embeddings.position_embeddings.weight': [512, D],
    'bert.embeddings.token_type_embeddings.weight': [2, D],
    'bert.embeddings.LayerNorm.weight': [D],
    'bert.embeddings.LayerNorm.bias': [D],
    'bert.pooler.dense.weight': [D, D],
    'bert.pooler.dense.bias': [D],
  };
  for (let l = 0; l < L; l++) {
    const p = `bert.encoder.layer.${l}`;
    for (const m of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense']) {
      shapes[`${p}.${m}.weight`] = [D, D];
      shapes[`${p}.${m}.bias`] = [D];
    }
    Object.assign(shapes, {
      [`${p}.intermediate.dense.weight`]: [F, D],
      [`${p}.intermediate.dense.bias`]: [F],
      [`${p}.output.dense.weight`]: [D, F],
      [`${p}.output.dense.bias`]: [D],
    });
    for (const n of ['attention.output.LayerNorm', 'output.LayerNorm']) {
      shapes[`${p}.${n}.weight`] = [D];
      shapes[`${p}.${n}.bias`] = [D];
    }
  }
  const tensors: Record<string, TensorData> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name.endsWith('LayerNorm.weight')) data.fill(1);
    else if (!name.endsWith('bias')) for (let i = 0; i < n; i++) data[i] = 0.02 * rng.normal();
    tensors[name] = { dtype: 'float32', shape, data };
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      model_type: 'bert',
      architectures: ['BertForSequenceClassification'],
      hidden_size: D,
      num_attention_heads: H,
      num_hidden_layers: L,
      intermediate_size: F,
      vocab_size: V,
      max_position_embeddings: 512,
      type_vocab_size: 2,
      layer_norm_eps: 1e-12,
      hidden_act: 'gelu',
      num_labels: 2,
    }),
  );
  process.stdout.write(`${JSON.stringify({ dir })}\n`);
  process.exit(0);
}

const ids = BigInt64Array.from({ length: B * S }, () => BigInt(rng.int(V)));
const mask = BigInt64Array.from({ length: B * S }, (_, i) =>
  Math.floor(i / S) % 2 === 1 && i % S >= S - 16 ? 0n : 1n,
);
const batch: Record<string, HostTensor> = {
  input_ids: { dtype: 'int64', shape: [B, S], data: ids },
  attention_mask: { dtype: 'int64', shape: [B, S], data: mask },
  token_type_ids: { dtype: 'int64', shape: [B, S], data: new BigInt64Array(B * S) },
  labels: { dtype: 'int64', shape: [B], data: BigInt64Array.from({ length: B }, () => BigInt(rng.int(2))) },
};

// Folder → first step done.
const t0 = performance.now();
const model = loadModel(dir, { task: 'classification', numLabels: 2 });
const initial: Record<string, HostTensor> = { ...model.created };
for (let l = 0; l < L; l++) {
  for (const proj of ['query', 'value']) {
    const mod = `bert.encoder.layer.${l}.attention.self.${proj}`;
    const [A, Bv] = addLowRank(model.graph, model, mod, R, ALPHA / R);
    const bound = 1 / Math.sqrt(D);
    initial[A.name] = {
      dtype: 'float32',
      shape: [R, D],
      data: Float32Array.from({ length: R * D }, () => rng.uniform(-bound, bound)),
    };
    initial[Bv.name] = { dtype: 'float32', shape: [D, R], data: new Float32Array(D * R) };
  }
}
const trainable = Object.keys(initial);
const graphs = buildTrainStep({
  forward: model.graph,
  loss: model.loss,
  trainable,
  optimizer: { maxGradNorm: 1, weightDecay: 0.01 },
});
const prepack = process.argv.includes('--prepack') ? true : undefined;
const runner = await StepRunner.open(graphs, initial, {
  inWorker: false,
  session: { device: 'cpu', threads, prepack, cpuArena: !process.argv.includes('--no-arena') },
});
const tOpen = performance.now() - t0;
let step = 0;
await runner.step([batch], 1e-4, step++);
const setupMs = performance.now() - t0;

const ts: number[] = [];
for (let i = 0; i < warmup + iters; i++) {
  const t = performance.now();
  await runner.step([batch], 1e-4, step++);
  if (i >= warmup) ts.push(performance.now() - t);
}
await runner.release();

const fg = model.graph.clone();
fg.outputs.length = 0;
fg.output(model.loss);
fg.prune();
const fwd = await openInline(fg, { device: 'cpu', threads, prepack });
const feeds = { ...batch, ...initial };
const fs: number[] = [];
for (let i = 0; i < warmup + iters; i++) {
  const t = performance.now();
  await fwd.run(feeds);
  if (i >= warmup) fs.push(performance.now() - t);
}
await fwd.release();
if (process.argv.includes('--keep')) process.stderr.write(`kept ${dir}\n`);
else rmSync(dir, { recursive: true, force: true });
process.stdout.write(
  `${JSON.stringify({
    setup_to_first_step_ms: setupMs,
    open_ms: tOpen,
    forward_ms: median(fs),
    train_step_ms: median(ts),
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    trainable_params: trainable.reduce((a, p) => a + initial[p].data.length, 0),
  })}\n`,
);
