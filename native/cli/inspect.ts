// `delta-studio inspect <model-dir> [--delta config.json]`: the model's module tree with parameter shapes and
// counts, and, with a delta config, the modules it modifies and what it costs.
import { readFileSync } from 'node:fs';
import { applyDeltas, deltaBuildOptions, parseDeltaConfig } from '../delta/index.js';
import { deltaReport } from '../delta/report.js';
import { loadModel, type Task } from '../models/index.js';
import { moduleTree, renderTree } from '../models/tree.js';

const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`;

export async function inspect(
  dir: string | undefined,
  v: Record<string, string | boolean | undefined>,
): Promise<number> {
  if (!dir) throw new Error('inspect needs a model folder: delta-studio inspect <model-dir> [--json]');
  const task = v.task as Task | undefined;
  const numLabels = v['num-labels'] === undefined ? undefined : Number(v['num-labels']);
  if (numLabels !== undefined && (!Number.isInteger(numLabels) || numLabels < 1))
    throw new Error(`--num-labels must be a positive integer, got "${v['num-labels']}"`);
  const positive = (k: string, d: number): number => {
    const n = v[k] === undefined ? d : Number(v[k]);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${k} must be a positive integer, got "${v[k]}"`);
    return n;
  };
  let configs;
  if (typeof v.delta === 'string') {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(v.delta, 'utf8'));
    } catch (e) {
      throw new Error(`${v.delta}: ${(e as Error).message}`, { cause: e });
    }
    configs = parseDeltaConfig(raw, v.delta);
  }
  const model = loadModel(dir, { task, numLabels, build: configs ? deltaBuildOptions(configs) : undefined });
  let report;
  let marks: Map<string, string[]> | undefined;
  if (configs) {
    const applied = applyDeltas(model, configs);
    marks = applied.marked;
    report = deltaReport(model, applied, { batch: positive('batch', 8), seq: positive('seq', 128) });
  }
  const tree = moduleTree(model, marks);
  if (v.json) {
    process.stdout.write(
      `${JSON.stringify({ ...tree, root: undefined, task: model.task, inputs: model.inputs, ...(report ?? {}) })}\n`,
    );
    return 0;
  }
  process.stdout.write(`${renderTree(tree)}\n`);
  if (report) {
    const lines = [
      '',
      `delta: ${Object.entries(report.by_method)
        .map(([m, n]) => `${m} ${n.toLocaleString('en-US')}`)
        .join(', ')}`,
      `modules modified: ${report.matched_modules.length}`,
      `trainable parameters: ${report.trainable_params.toLocaleString('en-US')} (${report.trainable_percent.toPrecision(3)}% of ${report.backbone_params.toLocaleString('en-US')})`,
      `plugin file: ${report.plugin_bytes.toLocaleString('en-US')} bytes`,
      `training memory (batch ${report.estimate.batch} × ${report.estimate.seq} tokens): about ${mb(report.estimated_train_memory_bytes)} ` +
        `(weights ${mb(report.estimate.weights_bytes)}, optimizer ${mb(report.estimate.optimizer_bytes)}, activations ${mb(report.estimate.activation_bytes)})`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return 0;
}
