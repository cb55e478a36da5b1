// A training run recorded in a workspace: starts the trainer (a child process, or Electron's utilityProcess) on the
// run's folder, turns its events into the run's status and metric series, and its delta into a new plugin version.
// The store only records; this is where recording meets running.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadSplit } from '../data/index.js';
import { viewAs } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes } from '../onnx/safetensors.js';
import { writeFileAtomic } from '../files/atomic.js';
import { startTrainer, type TrainerJob } from '../train/process.js';
import type { TrainEvent, TrainResult } from '../train/trainer.js';
import { ACTIVE_RUNS, type PluginVersionRow, type Workspace } from '../store/workspace.js';
import type { RunStatus } from '../contract/index.js';
import type { RunFile } from './run-file.js';

export type StartTrainer = typeof startTrainer;

export interface RecordedRun {
  job: TrainerJob;
  /** Resolves when the run has ended and been recorded (with its plugin version when it finished). */
  done: Promise<{ result: TrainResult; plugin?: PluginVersionRow }>;
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

/**
 * Starts (or resumes: the trainer continues from the run folder's last checkpoint) a run recorded in `ws`.
 * Progress metrics are written in batches (at most every `flushMs`, and at every evaluation, checkpoint and at the
 * end), each batch one transaction.
 */
export function recordRun(
  ws: Workspace,
  run: RunFile,
  onEvent: (e: TrainEvent) => void = () => {},
  opts: { flushMs?: number; startTrainer?: StartTrainer } = {},
): RecordedRun {
  const row = ws.getRun(run.id);
  const data = { train: loadSplit(run.dataset.dir, 'train'), validation: loadSplit(run.dataset.dir, 'validation') };
  const pending: { key: string; step: number; value: number }[] = [];
  let lastFlush = Date.now();
  const flush = (): void => {
    ws.appendMetrics(run.id, pending.splice(0));
    lastFlush = Date.now();
  };
  const t0 = performance.now();
  ACTIVE_RUNS.add(run.id);
  const job = (opts.startTrainer ?? startTrainer)(run.config, data, (e) => {
    if (e.type === 'start')
      ws.startRun(run.id, { device: e.device, totalSteps: e.totalSteps, trainableParams: e.trainable });
    else if (e.type === 'progress') {
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
    else if (e.type === 'paused') ws.setRunStatus(run.id, 'paused');
    else if (e.type === 'resumed') ws.setRunStatus(run.id, 'running');
    onEvent(e);
  });
  ws.startRun(run.id, { pid: process.pid });
  const done = job.result
    .then(
      (result) => {
        flush();
        const status = STATUS[result.status];
        ws.finishRun(run.id, {
          status,
          steps: result.steps,
          reason:
            result.status === 'stopped-early'
              ? `stopped early at step ${result.steps} (no better ${result.best?.metric ?? 'metric'} for the patience)`
              : result.reason,
          tokensPerSec: result.tokensPerSec,
          trainSeconds: (performance.now() - t0) / 1000,
          device: result.device,
        });
        writeFileAtomic(
          join(ws.path(row.dir), 'result.json'),
          new TextEncoder().encode(`${JSON.stringify(result, null, 2)}\n`),
        );
        let plugin: PluginVersionRow | undefined;
        if (status === 'finished' && existsSync(result.deltaFile)) {
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
        }
        return { result, plugin };
      },
      (e: Error) => {
        try {
          flush();
        } catch {
          /* the failure below is the one to report */
        }
        ws.finishRun(run.id, { status: 'failed', steps: ws.getRun(run.id).steps, reason: e.message });
        throw e;
      },
    )
    .finally(() => ACTIVE_RUNS.delete(run.id));
  return { job, done };
}
