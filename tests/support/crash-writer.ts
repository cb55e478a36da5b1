// A process that writes runs, metrics and plugin versions into a workspace and prints one JSON line after each
// commit ("ack"), so that a test killing it (at a crash point, or at a random instant) knows what was recorded.
// Usage: crash-writer.ts <workspace> <iterations, 0 = until killed>
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Workspace } from '../../native/store/workspace.js';
import { writeRunFile } from '../../native/app/run-file.js';
import { Rng } from '../../native/rng.js';

const [dir, iterArg] = process.argv.slice(2);
const iterations = Number(iterArg ?? 1) || Infinity;
const ack = (o: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};
const ws = Workspace.open(dir);
ack({ opened: ws.recovered });
for (let it = 0; it < iterations; it++) {
  const id = Workspace.newRunId();
  const config = {
    model: '/models/m',
    deltas: [{ method: 'lora', r: 2, alpha: 4 }],
    epochs: 1,
    batchSize: 4,
    lr: 1e-3,
    maxLength: 16,
    seed: it,
    runDir: join(dir, 'runs', id),
  };
  // Files before the row that names them, as the CLI does: a kill in between leaves an orphan folder, never a row
  // without its folder.
  mkdirSync(join(dir, 'runs', id), { recursive: true });
  writeRunFile(join(dir, 'runs', id), {
    id,
    dataset: { dir: '/nowhere', digest: 'd', task: 'classification' },
    config: config as never,
  });
  ws.createRun({ id, config, method: 'lora', dir: `runs/${id}` });
  ack({ run: id });
  ws.startRun(id, { device: 'cpu', totalSteps: 15 });
  for (let k = 0; k < 3; k++) {
    const points = Array.from({ length: 5 }, (_, i) => ({
      key: 'train/loss',
      step: k * 5 + i + 1,
      value: 1 / (k * 5 + i + 1),
    }));
    ws.appendMetrics(id, points);
    ack({ metrics: id, steps: points.map((p) => p.step), values: points.map((p) => p.value) });
  }
  const rng = new Rng(it + 1);
  const tensors = {
    'layer.0.q.lora_A': {
      dtype: 'float32' as const,
      shape: [2, 64],
      data: Float32Array.from({ length: 128 }, () => rng.normal()),
    },
  };
  const v = ws.registerPlugin({
    name: 'crash-test',
    tensors,
    meta: {
      methods: [{ method: 'lora', r: 2, alpha: 4 }],
      task: 'classification',
      labels: ['a', 'b'],
      base: { fingerprint: 'e'.repeat(64), modelType: 'llama', name: 'm' },
      metrics: { accuracy: rng.next() },
    },
    runId: id,
  });
  ack({ plugin: v.plugin, version: v.version, sha256: v.sha256, run: id });
  ws.finishRun(id, { status: 'finished', steps: 15 });
  ack({ finished: id });
}
ws.close();
