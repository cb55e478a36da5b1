// `delta-studio demo`: the embedded default end to end. It imports the demo reviews, tunes LoRA on the demo backbone
// (pretrained by scripts/make-demo.ts with this engine), evaluates on reviews whose adjectives the labelled data never
// shows, saves the delta, and runs the same method on an untrained copy and full fine-tuning, to show what
// pretraining and delta tuning buy. A front end like the others: every step is a call of the application.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEVICES, runConfig, type DeltaConfigInput, type DeviceChoice } from '../contract/index.js';
import { Application } from '../app/index.js';
import { randomWeights, writeFolder } from '../demo/backbone.js';
import { oneOf } from './flags.js';
import type { Values } from './output.js';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

interface DemoRun {
  name: string;
  plugin: string;
  modelId: number;
  deltas: DeltaConfigInput[];
  lr: number;
}

export async function demo(v: Values): Promise<number> {
  const json = v.json === true;
  const device = String(v.device ?? 'auto') as DeviceChoice;
  if (!DEVICES.includes(device)) throw new Error(`--device must be ${oneOf(DEVICES)}, got "${device}"`);
  const log = (s: string): void => {
    (json ? process.stderr : process.stdout).write(`${s}\n`);
  };
  const workspace = resolve(
    typeof v.workspace === 'string' ? v.workspace : mkdtempSync(join(tmpdir(), 'delta-studio-demo-')),
  );
  const t0 = performance.now();
  const app = new Application();
  try {
    await app.open(workspace, true);
    const untrained = join(workspace, 'untrained-backbone');
    writeFolder(untrained);
    randomWeights(untrained, 2024);
    const ds = await app.datasets.import({
      path: here('../demo/reviews-train.csv'),
      name: 'demo-reviews',
      task: 'classification',
      columns: {},
      validationPath: here('../demo/reviews-test.csv'),
      validationFraction: 0,
      seed: 0,
    });
    log(
      `demo dataset ${ds.digest.slice(0, 16)}: ${ds.rows.train} training reviews, ${ds.rows.validation} test reviews (test adjectives never appear in training)`,
    );
    const backbone = app.models.import({ path: here('../demo/backbone'), name: 'demo-backbone' });
    const copy = app.models.import({ path: untrained, name: 'untrained-backbone' });
    const lora = [{ method: 'lora', r: 8, alpha: 16 }];
    const runs: DemoRun[] = [
      {
        name: 'LoRA r=8, pretrained backbone',
        plugin: 'demo-reviews-lora',
        modelId: backbone.id,
        deltas: lora,
        lr: 5e-3,
      },
      {
        name: 'LoRA r=8, untrained backbone',
        plugin: 'demo-reviews-lora-untrained',
        modelId: copy.id,
        deltas: lora,
        lr: 5e-3,
      },
      {
        name: 'full fine-tuning, pretrained',
        plugin: 'demo-reviews-full',
        modelId: backbone.id,
        deltas: [{ method: 'full' }],
        lr: 1e-3,
      },
    ];
    const backboneParams = backbone.params ?? 0;
    const rows: {
      name: string;
      trainableParams: number;
      trainablePercent: number;
      accuracy: number;
      macroF1: number;
      seconds: number;
      tokensPerSec: number;
      plugin: string;
      pluginFile: string;
      device: string;
    }[] = [];
    for (const run of runs) {
      const t = performance.now();
      const cfg = runConfig.parse({
        modelId: run.modelId,
        datasetVersionId: ds.versionId,
        deltas: run.deltas,
        plugin: run.plugin,
        name: run.name,
        epochs: 15,
        batchSize: 32,
        warmup: 0.1,
        maxLength: 32,
        seed: 1,
        lr: run.lr,
        device,
      });
      const { runId } = await app.runs.start(cfg);
      const o = await app.queue.outcome(runId);
      const r = o.result;
      if (o.status !== 'finished' || !r || !o.plugin)
        throw new Error(`${run.name}: the run ended as ${o.status}${o.reason ? ` (${o.reason})` : ''}`);
      const trainable = app.runs.get(runId).run.trainableParams ?? 0;
      rows.push({
        name: run.name,
        trainableParams: trainable,
        trainablePercent: (100 * trainable) / backboneParams,
        accuracy: r.metrics.accuracy,
        macroF1: r.metrics.macro_f1,
        seconds: (performance.now() - t) / 1000,
        tokensPerSec: r.tokensPerSec,
        plugin: `${o.plugin.plugin}@${o.plugin.version}`,
        pluginFile: app.workspaceOrFail().path(o.plugin.file),
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
        `${r.name.padEnd(32)} ${r.trainableParams.toLocaleString('en-US').padStart(10)} ${r.trainablePercent.toFixed(2).padStart(7)} ${(100 * r.accuracy).toFixed(1).padStart(9)} ${(100 * r.macroF1).toFixed(1).padStart(9)} ${r.seconds.toFixed(1).padStart(8)}`,
      );
    log(
      `\nThe LoRA delta (${rows[0].trainablePercent.toFixed(2)}% of the backbone) is plugin ${rows[0].plugin}: ${rows[0].pluginFile}`,
    );
    log(`See it with: delta-studio plugins show demo-reviews-lora --workspace ${workspace}`);
    log(
      'Chance is 50%: the untrained backbone cannot judge adjectives it never saw labelled; the pretrained one learned them from unlabelled text.',
    );
    log(`Done in ${((performance.now() - t0) / 1000).toFixed(1)} s; workspace ${workspace}`);
    if (json)
      process.stdout.write(
        `${JSON.stringify({ workspace, dataset: ds.digest, device: rows[0].device, runs: rows, plugin: rows[0].pluginFile })}\n`,
      );
    return 0;
  } finally {
    await app.close();
  }
}
