// `delta-studio eval <run-dir>` and `predict <run-dir>`: a trained delta on its backbone, on held-out data or on
// text typed by the user.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSplit } from '../data/index.js';
import { loadWithDeltas } from '../delta/index.js';
import { viewAs } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes } from '../onnx/safetensors.js';
import { TextTokenizer } from '../models/tokenizer.js';
import { openInline } from '../runtime/host.js';
import { makeCollator } from '../train/collate.js';
import { evaluateRows, evaluationGraph } from '../train/trainer.js';
import { Generator } from '../train/generate.js';
import type { RunFile } from './train.js';
import { PluginSession, type Prediction } from '../plugins/session.js';
import { PLUGIN_EXTENSION, readPlugin } from '../plugins/format.js';
import { Workspace } from '../store/workspace.js';
import { workspaceDir } from './library.js';

async function open(runDir: string | undefined, best: boolean) {
  if (!runDir) throw new Error('give the run folder: delta-studio eval|predict <run-dir>');
  const runFile = join(runDir, 'run.json');
  if (!existsSync(runFile)) throw new Error(`${runDir}: no run.json (not a run folder)`);
  const run = JSON.parse(readFileSync(runFile, 'utf8')) as RunFile;
  const file = join(runDir, best ? 'best.safetensors' : 'delta.safetensors');
  if (!existsSync(file))
    throw new Error(`${file} is missing: the run has not saved ${best ? 'a best' : 'its'} delta yet`);
  const cfg = run.config;
  const { model, applied } = loadWithDeltas(
    cfg.model,
    { task: cfg.task, numLabels: cfg.labels?.length, precision: cfg.precision },
    cfg.deltas,
    cfg.seed,
  );
  const h = readSafetensorsHeader(file);
  const params: Record<string, HostTensor> = {};
  for (const p of applied.params) {
    const ref = h.tensors.get(p.name);
    if (!ref) throw new Error(`${file}: delta parameter "${p.name}" is missing`);
    params[p.value] = { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, readTensorBytes(ref)) };
  }
  const tok = TextTokenizer.fromFolder(cfg.model);
  const collate = makeCollator(model, tok, { maxLength: cfg.maxLength, labels: cfg.labels });
  const session = await openInline(evaluationGraph(model, applied.trainable), { device: cfg.device ?? 'auto' });
  return { run, model, params, collate, session, applied, tok };
}

export async function evalCommand(
  runDir: string | undefined,
  v: Record<string, string | boolean | undefined>,
): Promise<number> {
  const { run, model, params, collate, session } = await open(runDir, v.best === true);
  const split = (typeof v.split === 'string' ? v.split : 'validation') as 'train' | 'validation' | 'test';
  if (!['train', 'validation', 'test'].includes(split))
    throw new Error(`--split must be train, validation or test, got "${split}"`);
  const rows = loadSplit(run.dataset.dir, split);
  if (rows.length === 0) throw new Error(`the run's dataset has no ${split} rows`);
  const metrics = await evaluateRows(model.task, model.loss, session, collate, rows, params, run.config.batchSize);
  await session.release();
  if (v.json) process.stdout.write(`${JSON.stringify({ run_id: run.id, split, rows: rows.length, metrics })}\n`);
  else
    process.stdout.write(
      `${split} (${rows.length} rows): ${Object.entries(metrics)
        .map(([k, x]) => `${k} ${x.toFixed(4)}`)
        .join(', ')}\n`,
    );
  return 0;
}

export async function predictCommand(
  runDir: string | undefined,
  v: Record<string, string | boolean | undefined>,
): Promise<number> {
  const { run, model, params, collate, session, applied, tok } = await open(runDir, v.best === true);
  if (typeof v.text !== 'string' || !v.text)
    throw new Error('predict needs --text "…" (and --text-pair for a pair task)');
  if (model.task === 'causal-lm' || model.task === 'seq2seq-lm') {
    await session.release();
    const gen = await Generator.open(model, tok, applied.trainable, run.config.device ?? 'auto');
    const text = await gen.generate(
      v.text,
      params,
      v['max-new-tokens'] === undefined ? 32 : Number(v['max-new-tokens']),
    );
    await gen.release();
    if (v.json) process.stdout.write(`${JSON.stringify({ generated: text })}\n`);
    else process.stdout.write(`${text}\n`);
    return 0;
  }
  const example = {
    text: v.text,
    ...(typeof v['text-pair'] === 'string' ? { text_pair: v['text-pair'] } : {}),
    label: model.task === 'classification' ? run.config.labels![0] : 0,
  };
  const out = await session.run({ ...collate.batch([example]), ...params });
  await session.release();
  const logits = Array.from(out.logits.data as Float32Array);
  if (model.task === 'regression') {
    if (v.json) process.stdout.write(`${JSON.stringify({ value: logits[0] })}\n`);
    else process.stdout.write(`${logits[0]}\n`);
    return 0;
  }
  const max = Math.max(...logits);
  const e = logits.map((x) => Math.exp(x - max));
  const z = e.reduce((a, b) => a + b, 0);
  const probs = Object.fromEntries(run.config.labels!.map((l, i) => [l, e[i] / z]));
  const label = run.config.labels![logits.indexOf(max)];
  if (v.json) process.stdout.write(`${JSON.stringify({ label, probabilities: probs })}\n`);
  else
    process.stdout.write(
      `${label}  (${Object.entries(probs)
        .map(([l, p]) => `${l} ${(100 * p).toFixed(1)}%`)
        .join(', ')})\n`,
    );
  return 0;
}

/**
 * `predict --plugin REF [--plugin REF …]`: plugins from the workspace (or .delta files) attached together to their
 * base model, on one input; with --compare-base the bare base's answer too, side by side.
 */
export async function predictWithPlugins(v: Record<string, string | boolean | string[] | undefined>): Promise<number> {
  const refs = v.plugin as string[];
  if (typeof v.text !== 'string' || !v.text)
    throw new Error('predict needs --text "…" (and --text-pair for a pair task)');
  const isFile = (r: string): boolean => r.endsWith(PLUGIN_EXTENSION) && existsSync(r);
  // .delta files with --model need no workspace.
  const ws =
    refs.every(isFile) && typeof v.model === 'string'
      ? undefined
      : Workspace.open(workspaceDir(v as Record<string, string | boolean | undefined>));
  let session: PluginSession | undefined;
  try {
    const plugins = refs.map((r) => (isFile(r) ? { ...readPlugin(r), row: undefined } : ws!.loadPlugin(r)));
    let model = typeof v.model === 'string' ? v.model : undefined;
    if (!model) {
      const id = plugins.find((p) => p.row?.model_id != null)?.row?.model_id;
      if (id == null) throw new Error('the plugins do not record their base model; give it with --model <dir>');
      model = ws!.modelPath(ws!.getModel(id));
    }
    session = await PluginSession.open(model, { device: (v.device as 'auto' | 'cpu' | 'cuda' | undefined) ?? 'auto' });
    session.attach(plugins, { force: v.force === true });
    const input = { text: v.text, ...(typeof v['text-pair'] === 'string' ? { text_pair: v['text-pair'] } : {}) };
    const maxNewTokens = v['max-new-tokens'] === undefined ? 32 : Number(v['max-new-tokens']);
    const [withPlugins] = await session.predict([input], { maxNewTokens });
    const base =
      v['compare-base'] === true ? (await session.predict([input], { base: true, maxNewTokens }))[0] : undefined;
    const show = (p: Prediction): string =>
      'label' in p
        ? `${p.label}  (${Object.entries(p.probabilities)
            .map(([l, x]) => `${l} ${(100 * x).toFixed(1)}%`)
            .join(', ')})`
        : 'value' in p
          ? String(p.value)
          : p.generated;
    if (v.json)
      process.stdout.write(
        `${JSON.stringify({ plugins: session.attached.map((a) => a.name), prediction: withPlugins, base: base ?? null })}\n`,
      );
    else {
      process.stdout.write(`${session.attached.map((a) => a.name).join(' + ')}: ${show(withPlugins)}\n`);
      if (base) process.stdout.write(`base: ${show(base)}\n`);
    }
    return 0;
  } finally {
    await session?.close();
    ws?.close();
  }
}
