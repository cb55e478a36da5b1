// A run's saved delta on its backbone: evaluated on a split of the run's dataset, or asked about one input. Works
// from the run folder alone (run.json and the delta files), like a resume.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Prediction, SplitName } from '../contract/index.js';
import { loadSplit } from '../data/index.js';
import { loadWithDeltas } from '../delta/index.js';
import { viewAs } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes } from '../onnx/safetensors.js';
import { chatTemplateFor } from '../models/chat-template.js';
import { TextTokenizer } from '../models/tokenizer.js';
import { openInline } from '../runtime/host.js';
import { makeCollator } from '../train/collate.js';
import { evaluateRows, evaluationGraph } from '../train/trainer.js';
import { Generator } from '../train/generate.js';
import { readRunFile, type RunFile } from './run-file.js';

async function openRun(runDir: string, best: boolean) {
  const run = readRunFile(runDir);
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
  // A chat run's conversations are written with the template it trained with.
  const chat = run.dataset.task === 'chat' ? chatTemplateFor(cfg.model, tok, cfg.chatTemplate) : undefined;
  return { run, model, applied, params, tok, chat };
}

/** The run's delta (or its best one) on a split of its dataset. */
export async function evaluateRun(
  runDir: string,
  split: SplitName,
  best = false,
): Promise<{ run: RunFile; rows: number; metrics: Record<string, number> }> {
  const { run, model, applied, params, tok, chat } = await openRun(runDir, best);
  const rows = loadSplit(run.dataset.dir, split);
  if (rows.length === 0) throw new Error(`the run's dataset has no ${split} rows`);
  const collate = makeCollator(model, tok, { maxLength: run.config.maxLength, labels: run.config.labels, chat });
  const session = await openInline(evaluationGraph(model, applied.trainable), { device: run.config.device ?? 'auto' });
  try {
    const metrics = await evaluateRows(model.task, model.loss, session, collate, rows, params, run.config.batchSize);
    return { run, rows: rows.length, metrics };
  } finally {
    await session.release();
  }
}

/**
 * The run's delta on one input: a label with probabilities, a value, or a greedy continuation (a chat run's: the
 * assistant's reply to the input as the user's message).
 */
export async function predictWithRun(
  runDir: string,
  input: { text: string; textPair?: string },
  opts: { best?: boolean; maxNewTokens?: number } = {},
): Promise<Prediction> {
  const { run, model, applied, params, tok, chat } = await openRun(runDir, opts.best ?? false);
  const device = run.config.device ?? 'auto';
  if (model.task === 'causal-lm' || model.task === 'seq2seq') {
    const gen = await Generator.open(model, tok, applied.trainable, device, chat);
    try {
      if (chat) {
        let text = '';
        for await (const step of gen.chat([{ role: 'user', content: input.text }], params, opts.maxNewTokens ?? 32))
          text = step.text;
        return { generated: text };
      }
      return { generated: await gen.generate(input.text, params, opts.maxNewTokens ?? 32) };
    } finally {
      await gen.release();
    }
  }
  const collate = makeCollator(model, tok, { maxLength: run.config.maxLength, labels: run.config.labels });
  const session = await openInline(evaluationGraph(model, applied.trainable), { device });
  let logits: number[];
  try {
    const example = {
      text: input.text,
      ...(input.textPair !== undefined ? { text_pair: input.textPair } : {}),
      label: model.task === 'classification' ? run.config.labels![0] : 0,
    };
    const out = await session.run({ ...collate.batch([example]), ...params });
    logits = Array.from(out.logits.data as Float32Array);
  } finally {
    await session.release();
  }
  if (model.task === 'regression') return { value: logits[0] };
  const max = Math.max(...logits);
  const e = logits.map((x) => Math.exp(x - max));
  const z = e.reduce((a, b) => a + b, 0);
  const labels = run.config.labels!;
  return {
    label: labels[logits.indexOf(max)],
    probabilities: Object.fromEntries(labels.map((l, i) => [l, e[i] / z])),
  };
}
