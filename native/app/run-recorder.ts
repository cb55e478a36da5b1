// A training run recorded in a workspace: starts the trainer (a child process, or Electron's utilityProcess) on the
// run's folder, turns its events into the run's status and metric series, and its delta into a new plugin version.
// The store only records; this is where recording meets running. A write that fails (a full disk above all) stops the
// trainer and ends the run `failed` with one message; a trainer that dies without a result ends it `interrupted`.
// Nothing here throws out of an event handler: a failure is recorded, or at worst reported, never left uncaught.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadSplit } from '../data/index.js';
import { diskFullError, freeBytes, isDiskFull, type SpaceNeed } from '../files/disk.js';
import { writeFileAtomic } from '../files/atomic.js';
import { EndedError } from '../messages/errors.js';
import { viewAs } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes } from '../onnx/safetensors.js';
import { runDiskNeed } from '../train/checkpoint.js';
import { startTrainer, type TrainerJob } from '../train/process.js';
import type { TrainEvent, TrainResult } from '../train/trainer.js';
import { ACTIVE_RUNS, type PluginVersionRow, type Workspace } from '../store/workspace.js';
import type { RunStatus } from '../contract/index.js';
import type { RunFile } from './run-file.js';

export type StartTrainer = typeof startTrainer;

/** How a run ended, as recorded (or, where the store could not take it, as it should have been). */
export interface RunEnd {
  status: RunStatus;
  reason: string | null;
  /** The trainer's own account (absent when it died or was stopped for a failure to record). */
  result?: TrainResult;
  plugin?: PluginVersionRow;
}

export interface RecordedRun {
  job: TrainerJob;
  /** Resolves (never rejects) once the run has ended and been recorded. */
  done: Promise<RunEnd>;
}

const STATUS: Record<TrainResult['status'], RunStatus> = {
  finished: 'finished',
  'stopped-early': 'finished',
  diverged: 'diverged',
  cancelled: 'cancelled',
};

/** Reads a delta file written by the trainer: tensors by plugin name. */
export function readDeltaFile(file: string): Record<string, HostTensor> {
  const h = readSafetensorsHeader(file);
  const out: Record<string, HostTensor> = {};
  for (const [name, ref] of h.tensors)
    out[name] = { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, readTensorBytes(ref)) };
  return out;
}

/** What a run of this model writes from now on, for a disk-full message; unknown before its trainer has started. */
function runNeed(bytes: number): SpaceNeed {
  return { bytes, what: 'a run of this model', parts: 'checkpoints, plugin, metrics', then: 'resume it' };
}

/** Bytes already in a run's checkpoints (a resumed run writes over them). */
function checkpointBytes(runDir: string): number {
  const dir = join(runDir, 'checkpoints');
  if (!existsSync(dir)) return 0;
  return readdirSync(dir).reduce((a, f) => a + statSync(join(dir, f)).size, 0);
}

/**
 * Why a run could not go on, in one message: a full disk names the workspace, what is free and (once known) what the
 * run needs; any other failure to record says it was the workspace that failed.
 */
export function runFailure(ws: Workspace, e: unknown, needBytes?: number): string {
  if (isDiskFull(e, ws.dir)) return diskFullError(ws.dir, needBytes ? runNeed(needBytes) : undefined).message;
  const message = e instanceof Error ? e.message : String(e);
  return `the run could not be recorded in ${ws.dir} (${message}); the trainer was stopped: resume the run once the workspace can be written`;
}

/**
 * Starts (or resumes: the trainer continues from the run folder's last checkpoint) a run recorded in `ws`.
 * Progress metrics are written in batches (at most every `flushMs`, and at every evaluation, checkpoint and at the
 * end), each batch one transaction. Before the first step, the run's disk needs are checked against the free space.
 */
export function recordRun(
  ws: Workspace,
  run: RunFile,
  onEvent: (e: TrainEvent) => void = () => {},
  opts: { flushMs?: number; startTrainer?: StartTrainer } = {},
): RecordedRun {
  const row = ws.getRun(run.id);
  const runDir = ws.path(row.dir);
  const data = {
    train: loadSplit(run.dataset.dir, 'train'),
    validation: loadSplit(run.dataset.dir, 'validation'),
    test: loadSplit(run.dataset.dir, 'test'),
  };
  // Recorded before the trainer starts: a workspace that cannot take this leaves nothing running.
  ws.startRun(run.id, { pid: process.pid });
  ACTIVE_RUNS.add(run.id);
  const pending: { key: string; step: number; value: number }[] = [];
  let lastFlush = Date.now();
  let need: number | undefined;
  /** The first failure to record: the trainer is stopped and the run ends failed with it. */
  let failure: string | undefined;
  let job: TrainerJob | undefined;
  const fail = (e: unknown): void => {
    if (failure !== undefined) return;
    failure = runFailure(ws, e, need);
    // A paused trainer must step once more to see the cancel; the checkpoint it saves then, if it fits, is where a
    // resume continues from.
    job?.cancel();
    job?.resume();
  };
  const guard = (write: () => void): void => {
    if (failure !== undefined) return;
    try {
      write();
    } catch (e) {
      fail(e);
    }
  };
  const flush = (): void =>
    guard(() => {
      ws.appendMetrics(run.id, pending.splice(0));
      lastFlush = Date.now();
    });
  /** Refuses, before the first step, a run that will not fit on the workspace's disk. */
  const checkSpace = (trainableParams: number, totalSteps: number): void => {
    need = Math.max(0, runDiskNeed({ trainableParams, steps: totalSteps }) - checkpointBytes(runDir));
    if (freeBytes(ws.dir) >= need) return;
    failure = diskFullError(ws.dir, runNeed(need)).message;
    job?.kill(); // nothing written yet, and nothing to write: a cancel would save a checkpoint
  };
  const t0 = performance.now();
  const onTrainerEvent = (e: TrainEvent): void => {
    if (e.type === 'start') {
      guard(() => ws.startRun(run.id, { device: e.device, totalSteps: e.totalSteps, trainableParams: e.trainable }));
      if (failure === undefined) checkSpace(e.trainable, e.totalSteps - (e.resumedFrom ?? 0));
    } else if (e.type === 'progress') {
      pending.push(
        { key: 'train/loss', step: e.step, value: e.loss },
        { key: 'train/lr', step: e.step, value: e.lr },
        { key: 'train/grad_norm', step: e.step, value: e.gradNorm },
        { key: 'train/tokens_per_sec', step: e.step, value: e.tokensPerSec },
      );
      if (Date.now() - lastFlush >= (opts.flushMs ?? 1000)) flush();
    } else if (e.type === 'eval') {
      pending.push(...Object.entries(e.metrics).map(([k, v]) => ({ key: `eval/${k}`, step: e.step, value: v })));
      flush();
    } else if (e.type === 'checkpoint')
      flush(); // what a resume starts from is always recorded
    else if (e.type === 'paused') guard(() => ws.setRunStatus(run.id, 'paused'));
    else if (e.type === 'resumed') guard(() => ws.setRunStatus(run.id, 'running'));
    try {
      onEvent(e);
    } catch {
      /* a listener's failure is not the run's */
    }
  };
  try {
    job = (opts.startTrainer ?? startTrainer)(run.config, data, onTrainerEvent);
  } catch (e) {
    ACTIVE_RUNS.delete(run.id);
    throw e;
  }
  const started = job;

  /** Records the end; where the store cannot take it, the end is still returned (and the UI told). */
  const record = (end: RunEnd, extra: { steps: number; tokensPerSec?: number; device?: string }): RunEnd => {
    try {
      ws.finishRun(run.id, {
        status: end.status,
        steps: extra.steps,
        reason: end.reason ?? undefined,
        tokensPerSec: extra.tokensPerSec,
        trainSeconds: (performance.now() - t0) / 1000,
        device: extra.device,
      });
    } catch (e) {
      // The end could not be recorded: record at least that the run failed, and why.
      const failed: RunEnd = {
        status: 'failed',
        reason: end.status === 'failed' ? end.reason : runFailure(ws, e, need),
        result: end.result,
      };
      try {
        ws.setRunStatus(run.id, 'failed', failed.reason ?? undefined);
      } catch {
        /* the workspace takes nothing more; reopening it marks the run interrupted */
      }
      return failed;
    }
    return end;
  };
  const stepsSoFar = (): number => {
    try {
      return ws.getRun(run.id).steps;
    } catch {
      return 0;
    }
  };

  const finished = (result: TrainResult): RunEnd => {
    // The held-out test split, evaluated once at the end: its own series, beside the evaluations.
    if (result.testMetrics)
      pending.push(
        ...Object.entries(result.testMetrics).map(([k, v]) => ({ key: `test/${k}`, step: result.steps, value: v })),
      );
    flush();
    const status = STATUS[result.status];
    if (failure === undefined)
      guard(() =>
        writeFileAtomic(join(runDir, 'result.json'), new TextEncoder().encode(`${JSON.stringify(result, null, 2)}\n`)),
      );
    let plugin: PluginVersionRow | undefined;
    // A run of no training steps evaluated the model as it was: its delta is an initialisation, not a plugin.
    if (failure === undefined && status === 'finished' && result.steps > 0 && existsSync(result.deltaFile))
      guard(() => {
        const model = row.model_id !== null ? ws.getModel(row.model_id) : undefined;
        plugin = ws.registerPlugin({
          name: run.plugin ?? `${run.id}`,
          tensors: readDeltaFile(result.deltaFile),
          meta: {
            methods: run.config.deltas,
            task: run.config.task ?? 'classification',
            labels: run.config.labels,
            base: {
              fingerprint: model?.fingerprint ?? '',
              modelType: model?.model_type ?? '',
              name: model?.name ?? run.config.model,
            },
            metrics: result.metrics,
            maxLength: run.config.maxLength,
            runId: run.id,
          },
          runId: run.id,
          modelId: model?.id,
          source: 'run',
        });
      });
    // The plugin is registered before the run is marked finished: a finished run always has its plugin.
    if (failure !== undefined) return record({ status: 'failed', reason: failure, result }, { steps: result.steps });
    const reason =
      result.steps === 0
        ? 'evaluated only (no training steps): no plugin'
        : result.status === 'stopped-early'
          ? (result.reason ??
            `stopped early at step ${result.steps} (no better ${result.best?.metric ?? 'metric'} for the patience)`)
          : (result.reason ?? null);
    return record(
      { status, reason, result, plugin },
      { steps: result.steps, tokensPerSec: result.tokensPerSec, device: result.device },
    );
  };
  const ended = (e: unknown): RunEnd => {
    flush();
    let end: RunEnd;
    if (failure !== undefined) end = { status: 'failed', reason: failure };
    // Killed, crashed, out of memory: the trainer said nothing wrong, it is gone; its last checkpoint stands.
    else if (e instanceof EndedError) end = { status: 'interrupted', reason: e.message };
    else if (isDiskFull(e, ws.dir)) end = { status: 'failed', reason: runFailure(ws, e, need) };
    else end = { status: 'failed', reason: e instanceof Error ? e.message : String(e) };
    return record(end, { steps: stepsSoFar() });
  };
  const done = started.result
    .then(finished, ended)
    .catch((e: unknown): RunEnd => ({ status: 'failed', reason: runFailure(ws, e, need) }))
    .finally(() => ACTIVE_RUNS.delete(run.id));
  return { job: started, done };
}
