// `delta-studio demo`: the embedded default end to end. It imports the demo reviews, tunes LoRA on the demo backbone
// (pretrained by scripts/make-demo.ts with this engine), evaluates on reviews whose adjectives the labelled data never
// shows, saves the delta, and runs the same method on an untrained copy and full fine-tuning, to show what
// pretraining and delta tuning buy.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomWeights, writeFolder } from '../demo/backbone.js';
import { readModelFolder } from '../models/folder.js';
import type { TrainConfig } from '../train/trainer.js';
import { trackRun, writeRunFile } from '../store/track.js';
import { Workspace } from '../store/workspace.js';
import type { Device } from '../runtime/session.js';
import { importInto } from './train.js';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

export async function demo(v: Record<string, string | boolean | undefined>): Promise<number> {
  const json = v.json === true;
  const device = String(v.device ?? 'auto') as Device;
  if (!['auto', 'cpu', 'cuda'].includes(device)) throw new Error(`--device must be auto, cpu or cuda, got "${device}"`);
  const log = (s: string): void => {
    (json ? process.stderr : process.stdout).write(`${s}\n`);
  };
  const workspace = resolve(
    typeof v.workspace === 'string' ? v.workspace : mkdtempSync(join(tmpdir(), 'delta-studio-demo-')),
  );
  const backbone = here('../demo/backbone');
  const untrained = join(workspace, 'untrained-backbone');
  writeFolder(untrained);
  randomWeights(untrained, 2024);
  const t0 = performance.now();
  const { dir, version } = await importInto(
    workspace,
    here('../demo/reviews-train.csv'),
    'classification',
    {},
    here('../demo/reviews-test.csv'),
  );
  log(
    `demo dataset ${version.digest.slice(0, 16)}: ${version.rows.train} training reviews, ${version.rows.validation} test reviews (test adjectives never appear in training)`,
  );
  const ws = Workspace.init(workspace);
  const { versionId } = ws.addDatasetVersion('demo-reviews', relative(workspace, dir), version);
  const models = {
    [backbone]: ws.addModel(backbone, { name: 'demo-backbone' }),
    [untrained]: ws.addModel(untrained, { name: 'untrained-backbone' }),
  };
  const backboneParams = [...readModelFolder(backbone).weights.values()].reduce(
    (a, r) => a + r.shape.reduce((x, y) => x * y, 1),
    0,
  );
  const base = {
    task: 'classification' as const,
    labels: version.labels,
    epochs: 15,
    batchSize: 32,
    warmup: 0.1,
    maxLength: 32,
    seed: 1,
    device,
  };
  const runs: { name: string; plugin: string; id: string; config: TrainConfig }[] = [
    {
      name: 'LoRA r=8, pretrained backbone',
      plugin: 'demo-reviews-lora',
      config: { ...base, model: backbone, deltas: [{ method: 'lora', r: 8, alpha: 16 }], lr: 5e-3 },
    },
    {
      name: 'LoRA r=8, untrained backbone',
      plugin: 'demo-reviews-lora-untrained',
      config: { ...base, model: untrained, deltas: [{ method: 'lora', r: 8, alpha: 16 }], lr: 5e-3 },
    },
    {
      name: 'full fine-tuning, pretrained',
      plugin: 'demo-reviews-full',
      config: { ...base, model: backbone, deltas: [{ method: 'full' }], lr: 1e-3 },
    },
  ].map((r) => {
    const id = Workspace.newRunId();
    return { ...r, id, config: { ...r.config, runDir: join(workspace, 'runs', id) } as TrainConfig };
  });
  const rows: {
    name: string;
    trainable_params: number;
    trainable_percent: number;
    accuracy: number;
    macro_f1: number;
    seconds: number;
    tokens_per_sec: number;
    plugin: string;
    plugin_file: string;
    device: string;
  }[] = [];
  for (const run of runs) {
    const t = performance.now();
    let trainable = 0;
    const runFile = {
      id: run.id,
      dataset: { dir, digest: version.digest, task: 'classification' as const },
      config: run.config,
      plugin: run.plugin,
    };
    mkdirSync(run.config.runDir, { recursive: true });
    writeRunFile(run.config.runDir, runFile);
    ws.createRun({
      id: run.id,
      name: run.name,
      config: run.config,
      method: run.config.deltas.map((d) => d.method).join('+'),
      modelId: models[run.config.model].id,
      datasetVersionId: versionId,
      dir: relative(workspace, run.config.runDir),
      totalParams: backboneParams,
    });
    const { result: r, plugin } = await trackRun(ws, runFile, (e) => {
      if (e.type === 'start') trainable = e.trainable;
    }).done;
    if (r.status !== 'finished' || !plugin)
      throw new Error(`${run.name}: the run ended as ${r.status}${r.reason ? ` (${r.reason})` : ''}`);
    rows.push({
      name: run.name,
      trainable_params: trainable,
      trainable_percent: (100 * trainable) / backboneParams,
      accuracy: r.metrics.accuracy,
      macro_f1: r.metrics.macro_f1,
      seconds: (performance.now() - t) / 1000,
      tokens_per_sec: r.tokensPerSec,
      plugin: `${plugin.plugin}@${plugin.version}`,
      plugin_file: ws.path(plugin.file),
      device: r.device,
    });
    log(
      `${run.name}: held-out accuracy ${(100 * r.metrics.accuracy).toFixed(1)}% with ${trainable.toLocaleString('en-US')} trainable parameters (${((100 * trainable) / backboneParams).toFixed(2)}%) in ${rows[rows.length - 1].seconds.toFixed(1)} s`,
    );
  }
  log('');
  log(
    `${'run'.padEnd(32)} ${'trainable'.padStart(10)} ${'%'.padStart(7)} ${'accuracy'.padStart(9)} ${'macro-F1'.padStart(9)} ${'seconds'.padStart(8)}`,
  );
  for (const r of rows)
    log(
      `${r.name.padEnd(32)} ${r.trainable_params.toLocaleString('en-US').padStart(10)} ${r.trainable_percent.toFixed(2).padStart(7)} ${(100 * r.accuracy).toFixed(1).padStart(9)} ${(100 * r.macro_f1).toFixed(1).padStart(9)} ${r.seconds.toFixed(1).padStart(8)}`,
    );
  ws.close();
  log(
    `\nThe LoRA delta (${rows[0].trainable_percent.toFixed(2)}% of the backbone) is plugin ${rows[0].plugin}: ${rows[0].plugin_file}`,
  );
  log(`See it with: delta-studio plugins show demo-reviews-lora --workspace ${workspace}`);
  log(
    'Chance is 50%: the untrained backbone cannot judge adjectives it never saw labelled; the pretrained one learned them from unlabelled text.',
  );
  log(`Done in ${((performance.now() - t0) / 1000).toFixed(1)} s; workspace ${workspace}`);
  if (json)
    process.stdout.write(
      `${JSON.stringify({ workspace, dataset: version.digest, device: rows[0].device, runs: rows, plugin: rows[0].plugin_file })}\n`,
    );
  return 0;
}
