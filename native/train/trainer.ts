// The training loop: batches by length, AdamW steps through the step graph, a warmup schedule, evaluation every N
// steps with early stopping and the best delta kept, NaN/Inf detection (status "diverged"), checkpoints that a
// resumed run continues from exactly, and progress events. Runs wherever it is called; the trainer process
// (process.ts) calls it so that no UI or IPC thread ever blocks on onnxruntime.
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { loadWithDeltas, type DeltaConfig } from '../delta/index.js';
import { asDiskFull } from '../files/disk.js';
import type { Graph, HostTensor } from '../onnx/graph.js';
import { writeSafetensors } from '../onnx/safetensors.js';
import { chatTemplateFor } from '../models/chat-template.js';
import { TextTokenizer } from '../models/tokenizer.js';
import type { BuiltModel, Task } from '../models/types.js';
import type { Device } from '../runtime/session.js';
import { openInline, type SessionHandle } from '../runtime/host.js';
import { cudaStatus } from '../runtime/providers.js';
import { hashString } from '../rng.js';
import { planEpoch } from './batching.js';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { makeCollator, type Collator, type Example } from './collate.js';
import { withoutDropout } from './dropout.js';
import { Generator } from './generate.js';
import { accuracy, macroF1, mcc, pearson, perplexity, spearman } from './metrics.js';
import { StepRunner, type Runner, type RunnerState } from './runner.js';
import { openRunner, type Residency } from './resident-runner.js';
import { lrAt, type ScheduleKind } from './schedule.js';
import { chooseAttention } from './fused-attention-check.js';
import { buildTrainStep, recomputeFor } from './step.js';

export interface TrainConfig {
  model: string;
  task?: Task;
  /** Label vocabulary of a classification task. */
  labels?: string[];
  deltas: DeltaConfig[];
  epochs: number;
  maxSteps?: number;
  batchSize: number;
  accumulation?: number;
  lr: number;
  schedule?: ScheduleKind;
  /** Warmup: a fraction of the steps when below 1, else a step count. */
  warmup?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  maxLength: number;
  seed: number;
  device?: Device;
  /** 'float16': mixed precision (frozen matrices in float16; deltas and optimizer in float32). */
  precision?: 'float32' | 'float16';
  evalEvery?: number;
  earlyStopping?: { metric: string; patience: number };
  /** Seconds of training after which the run stops (saving and evaluating as at its end), counted from its start. */
  maxTime?: number;
  checkpointEvery?: number;
  runDir: string;
  inWorker?: boolean;
  /** Conversations (a chat dataset) are written with this chat template: a name or a template's text (default: the model's own). */
  chatTemplate?: string;
  /**
   * Diagnostics (gpu-check): every step is taken a second time on this device, from the same parameters, moments,
   * batch, learning rate and dropout seed, and each progress event says how far the two steps differ. Comparing
   * whole loss curves of two devices measures how training amplifies rounding; this measures the kernels.
   */
  shadowDevice?: 'cpu' | 'cuda';
  /**
   * Parameters and optimizer state on the device between steps (the resident-state addon): 'auto' (default) on CUDA
   * where the addon is built, 'on' anywhere (the CPU too: tests), 'off' never.
   */
  resident?: Residency;
  /** Self-attention as one fused node ('fused') or as nodes ('explicit'); 'auto' (default): fused on CUDA. */
  attention?: 'auto' | 'fused' | 'explicit';
}

/** How one step on the shadow device differs from the step taken: relative to the step taken. */
export interface ShadowStep {
  device: 'cpu' | 'cuda';
  /** |loss' − loss| / |loss|. */
  loss: number;
  /** |‖g'‖ − ‖g‖| / ‖g‖ (before clipping). */
  gradNorm: number;
  /** ‖θ' − θ‖ / ‖θ − θ₀‖ over all trainable parameters: the difference of the updates, relative to the update. */
  update: number;
}

export type RunStatus = 'finished' | 'diverged' | 'cancelled' | 'stopped-early';

export type TrainEvent =
  | {
      type: 'start';
      totalSteps: number;
      device: string;
      fallbackReason?: string;
      trainable: number;
      resumedFrom?: number;
    }
  | {
      type: 'progress';
      step: number;
      epoch: number;
      loss: number;
      lr: number;
      gradNorm: number;
      /** With shadowDevice: the same step there, compared. */
      shadow?: ShadowStep;
      tokensPerSec: number;
      etaSeconds: number;
      rssBytes: number;
    }
  | { type: 'eval'; step: number; metrics: Record<string, number> }
  | { type: 'checkpoint'; step: number; file: string }
  | { type: 'paused' }
  | { type: 'resumed' };

export interface TrainResult {
  status: RunStatus;
  steps: number;
  metrics: Record<string, number>;
  /** On the held-out test split, when the dataset has one: evaluated once, at the end, with the final delta. */
  testMetrics?: Record<string, number>;
  best?: { step: number; metric: string; value: number };
  tokensPerSec: number;
  device: string;
  deltaFile: string;
  reason?: string;
}

/** Metrics where higher is better; the rest (loss, perplexity, mse) are minimised. */
const HIGHER = new Set(['accuracy', 'macro_f1', 'mcc', 'pearson', 'spearman', 'exact_match']);

/**
 * Trains. `signal` cancels after the current step; `gate` is awaited before every step (a paused run waits there).
 */
export async function train(
  cfg: TrainConfig,
  data: { train: Example[]; validation?: Example[]; test?: Example[] },
  emit: (e: TrainEvent) => void = () => {},
  signal?: AbortSignal,
  gate?: () => Promise<void>,
): Promise<TrainResult> {
  if (data.train.length === 0) throw new Error('no training examples');
  const acc = cfg.accumulation ?? 1;
  // The device is decided first: mixed precision on CUDA is float16 activations too (with loss scaling; onnxruntime's
  // CPU provider wraps its float16 kernels in float32 casts, so there only the frozen matrices are float16), attention
  // is fused there, and what the backward pass recomputes depends on the device.
  let device = cfg.device ?? 'auto';
  if (device === 'auto') device = (await cudaStatus()).usable ? 'cuda' : 'auto';
  const { attention, fallback } = await chooseAttention(device, cfg.attention);
  if (fallback) process.stderr.write(`${fallback}; attention is built explicitly\n`);
  const { model, applied } = loadWithDeltas(
    cfg.model,
    {
      task: cfg.task,
      numLabels: cfg.labels?.length,
      precision: cfg.precision,
      attention,
    },
    cfg.deltas,
    cfg.seed,
  );
  const tok = TextTokenizer.fromFolder(cfg.model);
  const chat = data.train[0]?.messages ? chatTemplateFor(cfg.model, tok, cfg.chatTemplate) : undefined;
  const collate = makeCollator(model, tok, { maxLength: cfg.maxLength, labels: cfg.labels, chat });
  const lengths = collate.lengths(data.train);
  const batchesPerEpoch = Math.ceil(data.train.length / cfg.batchSize);
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / acc);
  const totalSteps = Math.min(cfg.maxSteps ?? Infinity, cfg.epochs * stepsPerEpoch);
  const warmupSteps = (cfg.warmup ?? 0) < 1 ? Math.round((cfg.warmup ?? 0) * totalSteps) : (cfg.warmup as number);
  const schedule = { lr: cfg.lr, kind: cfg.schedule ?? 'linear', warmup: warmupSteps, total: totalSteps };

  const stepGraphs = (on: Device) =>
    buildTrainStep({
      forward: model.graph,
      loss: model.loss,
      trainable: applied.trainable,
      optimizer: { weightDecay: cfg.weightDecay ?? 0.01, maxGradNorm: cfg.maxGradNorm ?? 1 },
      accumulation: acc,
      activations: cfg.precision === 'float16' && on === 'cuda' ? 'float16' : 'float32',
      recompute: recomputeFor(on),
    });
  const runner = await openRunner(stepGraphs(device), applied.initial, device, {
    inWorker: cfg.inWorker ?? false,
    resident: cfg.resident,
  });
  const shadow = cfg.shadowDevice
    ? await StepRunner.open(stepGraphs(cfg.shadowDevice), applied.initial, {
        inWorker: false,
        session: { device: cfg.shadowDevice },
      })
    : null;

  // Evaluation reads the trained parameters as inputs of a dropout-free forward graph.
  const evaluator = await openInline(evaluationGraph(model, applied.trainable), { device: runner.device });

  const ckptDir = join(cfg.runDir, 'checkpoints');
  // What the trainer writes (checkpoints, deltas) fails as a full disk when it is one, naming the run's folder: the
  // error crosses to the parent, which knows the workspace and says what the run needs.
  const written = <T>(write: () => T): T => {
    try {
      return write();
    } catch (e) {
      throw asDiskFull(e, cfg.runDir);
    }
  };
  written(() => mkdirSync(cfg.runDir, { recursive: true }));
  let epoch = 0,
    cursor = 0;
  let best: TrainResult['best'];
  let patience = 0;
  const resumed = loadCheckpoint(ckptDir);
  if (resumed) {
    runner.restore(resumed);
    epoch = resumed.epoch;
    cursor = resumed.cursor;
    best = resumed.extra.best as TrainResult['best'];
    patience = (resumed.extra.patience as number) ?? 0;
    // A float16 run continues with the loss scale it had found (else its first steps after a resume would overflow).
    if (typeof resumed.extra.lossScale === 'number') runner.lossScale = resumed.extra.lossScale;
  }
  emit({
    type: 'start',
    totalSteps,
    device: runner.device,
    fallbackReason: runner.fallbackReason,
    trainable: applied.params.reduce((a, p) => a + applied.initial[p.value].data.length, 0),
    resumedFrom: resumed?.step,
  });

  // Language models are also judged on what they generate: exact match of greedy completions (up to 64 rows).
  const generator =
    model.task === 'causal-lm' || model.task === 'seq2seq'
      ? await Generator.open(model, tok, applied.trainable, runner.device, chat)
      : undefined;
  const evaluate = async (rows: Example[] = data.validation ?? []): Promise<Record<string, number>> => {
    const params = runner.params; // read once: a resident runner copies them from the device
    const m = await evaluateRows(model.task, model.loss, evaluator, collate, rows, params, cfg.batchSize);
    if (generator && rows.length) {
      const em = await generator.exactMatch(rows, params, 64);
      if (Number.isFinite(em)) m.exact_match = em;
    }
    return m;
  };

  const deltaFile = join(cfg.runDir, 'delta.safetensors');
  const saveDelta = (file: string): void => {
    const tensors: Record<string, HostTensor> = {};
    const params = runner.params;
    for (const p of applied.params) tensors[p.name] = params[p.value];
    written(() =>
      writeSafetensors(file, tensors, {
        format: 'delta-studio-delta',
        methods: JSON.stringify(cfg.deltas),
        step: String(runner.t),
      }),
    );
  };
  const checkpoint = (cursorAt: number): string =>
    written(() =>
      saveCheckpoint(ckptDir, {
        step: runner.t,
        epoch,
        cursor: cursorAt,
        params: runner.params,
        m: runner.m,
        v: runner.v,
        extra: { best, patience, lossScale: runner.lossScale },
      }),
    );

  let status: RunStatus = 'finished',
    reason: string | undefined;
  let metrics: Record<string, number> = {};
  let tokens = 0;
  const t0 = performance.now();
  const startStep = runner.t;
  const seedOf = (step: number): number => hashString(`${cfg.seed}:${step}`) & 0x7fffffff;
  outer: while (runner.t < totalSteps) {
    const plan = planEpoch(lengths, cfg.batchSize, cfg.seed, epoch);
    for (; cursor < plan.batches.length && runner.t < totalSteps; cursor += acc) {
      if (gate) await gate();
      if (signal?.aborted) {
        status = 'cancelled';
        // A cancelled run can be resumed from exactly here.
        checkpoint(cursor);
        break outer;
      }
      const micro = plan.batches.slice(cursor, cursor + acc).map((b) => collate.batch(b.map((i) => data.train[i])));
      while (micro.length < acc) micro.push(micro[micro.length - 1]); // a short last step repeats its last micro-batch
      const step = runner.t + 1;
      const lr = lrAt(schedule, step);
      // Only a shadowed run reads the state before the step: a resident runner copies it off the device to do so.
      const before = shadow
        ? { step: runner.t, params: { ...runner.params }, m: { ...runner.m }, v: { ...runner.v } }
        : null;
      const r = await runner.step(micro, lr, seedOf(step));
      const shadowed =
        shadow && before && !r.skipped ? await shadowStep(shadow, before, runner, micro, lr, seedOf(step), r) : null;
      // An overflow under loss scaling changed nothing and lowered the scale: the step is taken again on the next
      // batch, with the same learning rate (the schedule counts steps taken, not tried).
      if (r.skipped) continue;
      if (!Number.isFinite(r.loss) || !Number.isFinite(r.gradNorm)) {
        status = 'diverged';
        reason = `step ${step}: loss ${r.loss}, gradient norm ${r.gradNorm}`;
        break outer;
      }
      tokens += plan.batches
        .slice(cursor, cursor + acc)
        .flat()
        .reduce((a, i) => a + lengths[i], 0);
      const secs = (performance.now() - t0) / 1000;
      const done = runner.t - startStep;
      emit({
        type: 'progress',
        step: runner.t,
        epoch,
        loss: r.loss,
        lr,
        gradNorm: r.gradNorm,
        ...(shadowed ? { shadow: shadowed } : {}),
        tokensPerSec: tokens / secs,
        etaSeconds: (secs / done) * (totalSteps - runner.t),
        rssBytes: process.memoryUsage().rss,
      });
      const atEval = cfg.evalEvery && runner.t % cfg.evalEvery === 0;
      if (atEval) {
        metrics = await evaluate();
        emit({ type: 'eval', step: runner.t, metrics });
        const es = cfg.earlyStopping;
        const key = es?.metric ?? (model.task === 'classification' ? 'accuracy' : 'loss');
        if (key in metrics) {
          const better = !best || (HIGHER.has(key) ? metrics[key] > best.value : metrics[key] < best.value);
          if (better) {
            best = { step: runner.t, metric: key, value: metrics[key] };
            patience = 0;
            saveDelta(join(cfg.runDir, 'best.safetensors'));
          } else if (es && ++patience >= es.patience) {
            status = 'stopped-early';
            break outer;
          }
        }
      }
      if (cfg.checkpointEvery && runner.t % cfg.checkpointEvery === 0) {
        const file = checkpoint(cursor + acc);
        emit({ type: 'checkpoint', step: runner.t, file });
      }
      if (cfg.maxTime !== undefined && (performance.now() - t0) / 1000 >= cfg.maxTime && runner.t < totalSteps) {
        status = 'stopped-early';
        reason = `the time budget of ${cfg.maxTime} s was reached at step ${runner.t} of ${totalSteps}`;
        checkpoint(cursor + acc); // a resume continues from here, as after any stop
        break outer;
      }
    }
    if (runner.t < totalSteps && cursor >= plan.batches.length) {
      epoch++;
      cursor = 0;
    }
  }
  let testMetrics: Record<string, number> | undefined;
  if (status !== 'diverged') {
    if (status !== 'cancelled') {
      metrics = await evaluate();
      if (Object.keys(metrics).length) emit({ type: 'eval', step: runner.t, metrics });
      if (data.test?.length) testMetrics = await evaluate(data.test);
    }
    saveDelta(deltaFile);
  }
  const result: TrainResult = {
    status,
    steps: runner.t,
    metrics,
    ...(testMetrics ? { testMetrics } : {}),
    best,
    tokensPerSec: tokens / ((performance.now() - t0) / 1000),
    device: runner.device,
    deltaFile,
    reason,
  };
  await runner.release();
  await shadow?.release();
  await evaluator.release();
  await generator?.release();
  return result;
}

/** The step `taken` by `runner` from `before`, taken again by `shadow` from the same state, and the two compared. */
export async function shadowStep(
  shadow: StepRunner,
  before: RunnerState,
  runner: Runner,
  micro: Record<string, HostTensor>[],
  lr: number,
  seed: number,
  taken: { loss: number; gradNorm: number },
): Promise<ShadowStep> {
  shadow.restore(before);
  shadow.lossScale = runner.lossScale;
  const s = await shadow.step(micro, lr, seed);
  let diff = 0,
    update = 0;
  const after = runner.params;
  for (const [p, t] of Object.entries(after)) {
    const a = t.data as Float32Array,
      b = shadow.params[p].data as Float32Array,
      a0 = before.params[p].data as Float32Array;
    for (let i = 0; i < a.length; i++) {
      diff += (b[i] - a[i]) ** 2;
      update += (a[i] - a0[i]) ** 2;
    }
  }
  const rel = (x: number, y: number): number => (x === y ? 0 : Math.abs(x - y) / Math.abs(y));
  return {
    device: shadow.device,
    loss: rel(s.loss, taken.loss),
    gradNorm: rel(s.gradNorm, taken.gradNorm),
    update: diff === 0 ? 0 : Math.sqrt(diff / update),
  };
}

/** Metrics of `rows` under the given parameter values: loss, and accuracy/F1/MCC, Pearson/Spearman/MSE or perplexity. */
export async function evaluateRows(
  task: Task,
  lossName: string,
  session: SessionHandle,
  collate: Collator,
  rows: Example[],
  params: Record<string, HostTensor>,
  batchSize: number,
): Promise<Record<string, number>> {
  if (rows.length === 0) return {};
  let lossSum = 0,
    weight = 0;
  const preds: number[] = [],
    gold: number[] = [];
  for (let i = 0; i < rows.length; i += batchSize) {
    const xs = rows.slice(i, i + batchSize);
    const feeds = { ...collate.batch(xs), ...params };
    const out = await session.run(feeds);
    const w =
      task === 'classification' || task === 'regression'
        ? xs.length
        : Array.from(feeds.labels.data as BigInt64Array).filter((l) => l !== -100n).length;
    lossSum += Number(out[lossName].data[0]) * w;
    weight += w;
    if (task === 'classification') {
      const C = out.logits.shape[1];
      const lg = out.logits.data as Float32Array;
      for (let r = 0; r < xs.length; r++) {
        let k = 0;
        for (let c = 1; c < C; c++) if (lg[r * C + c] > lg[r * C + k]) k = c;
        preds.push(k);
        gold.push(Number((feeds.labels.data as BigInt64Array)[r]));
      }
    } else if (task === 'regression') {
      preds.push(...Array.from(out.logits.data as Float32Array));
      gold.push(...Array.from(feeds.labels.data as Float32Array));
    }
  }
  const m: Record<string, number> = { loss: lossSum / weight };
  if (task === 'classification')
    Object.assign(m, { accuracy: accuracy(preds, gold), macro_f1: macroF1(preds, gold), mcc: mcc(preds, gold) });
  else if (task === 'regression')
    Object.assign(m, {
      pearson: pearson(preds, gold),
      spearman: spearman(preds, gold),
      mse: preds.reduce((a, p, i) => a + (p - gold[i]) ** 2, 0) / preds.length,
    });
  else m.perplexity = perplexity(m.loss);
  return m;
}

/** A forward graph for evaluation and prediction: no dropout, the delta parameters as inputs, logits and loss out. */
export function evaluationGraph(model: BuiltModel, trainable: string[]): Graph {
  const g = withoutDropout(model.graph);
  for (const v of trainable) if (g.initializers.has(v)) g.promoteToInput(v);
  g.outputs.length = 0;
  g.output('logits');
  g.output(model.loss);
  g.prune();
  return g;
}
