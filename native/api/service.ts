// The engine behind the contract: one handler per method of native/api/contract.ts over the workspace, the trainer
// queue, exports and the plugin playground, and one event emitter for the UI. Both transports (Electron IPC and
// `delta-studio serve`) wrap this; they validate parameters (validateCall) before a handler sees them.
import { EventEmitter } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import { ContractError, METHODS, type Events, type EventName, type MethodName, type RunConfig } from './contract.js';
import type * as T from './types.js';
import {
  importDataset,
  readDatasetVersion,
  resolveColumns,
  tokenLengthStats,
  DEFAULT_MAX_BYTES,
  type ColumnMapping,
  type DatasetVersion,
  type TaskKind,
} from '../data/index.js';
import { formatOf, readRows } from '../data/readers.js';
import { loadWithDeltas, parseDeltaConfig, type DeltaConfig } from '../delta/index.js';
import { deltaReport } from '../delta/report.js';
import { loadModel, type Task } from '../models/index.js';
import { moduleTree } from '../models/tree.js';
import { TextTokenizer } from '../models/tokenizer.js';
import { exportInWorker } from '../export/in-worker.js';
import { importPeft } from '../export/peft.js';
import { safeName } from '../files/paths.js';
import { writeFileAtomic } from '../files/atomic.js';
import { PluginSession } from '../plugins/session.js';
import { checkWorkspace } from '../store/check.js';
import { trackRun, writeRunFile, type RunFile, type TrackedRun } from '../store/track.js';
import { Workspace, type RunStatus } from '../store/workspace.js';
import type { TrainConfig, TrainEvent } from '../train/trainer.js';
import type { startTrainer } from '../train/process.js';
import { activateCudaProvider, gpuStatus, installCudaProvider } from '../runtime/cuda-install.js';

export type * from './types.js';

type In<M extends MethodName> = z.infer<(typeof METHODS)[M]['params']>;

/** Every method with its (validated) parameters and concrete result. */
export interface Handlers {
  'app.info': (p: In<'app.info'>) => Promise<T.AppInfo>;
  'workspace.create': (p: In<'workspace.create'>) => Promise<T.WorkspaceInfo>;
  'workspace.open': (p: In<'workspace.open'>) => Promise<T.WorkspaceInfo>;
  'workspace.recent': (p: In<'workspace.recent'>) => Promise<T.RecentWorkspace[]>;
  'workspace.check': (p: In<'workspace.check'>) => Promise<T.CheckReport>;
  'models.import': (p: In<'models.import'>) => Promise<T.ModelRow>;
  'models.list': (p: In<'models.list'>) => Promise<T.ModelRow[]>;
  'models.tree': (p: In<'models.tree'>) => Promise<T.ModelTreeResult>;
  'datasets.preview': (p: In<'datasets.preview'>) => Promise<T.DatasetPreview>;
  /** job.done result: DatasetImportResult. */
  'datasets.import': (p: In<'datasets.import'>) => Promise<T.JobStarted>;
  'datasets.list': (p: In<'datasets.list'>) => Promise<T.DatasetSummary[]>;
  'datasets.stats': (p: In<'datasets.stats'>) => Promise<T.DatasetStatsResult>;
  'runs.estimate': (p: In<'runs.estimate'>) => Promise<T.RunEstimate>;
  'runs.start': (p: In<'runs.start'>) => Promise<T.RunStarted>;
  'runs.list': (p: In<'runs.list'>) => Promise<T.RunSummary[]>;
  'runs.get': (p: In<'runs.get'>) => Promise<T.RunDetail>;
  'runs.log': (p: In<'runs.log'>) => Promise<{ lines: string[] }>;
  'runs.metrics': (p: In<'runs.metrics'>) => Promise<T.RunMetrics>;
  'runs.pause': (p: In<'runs.pause'>) => Promise<T.RunControl>;
  'runs.resume': (p: In<'runs.resume'>) => Promise<T.RunControl>;
  'runs.cancel': (p: In<'runs.cancel'>) => Promise<T.RunControl>;
  'runs.compare': (p: In<'runs.compare'>) => Promise<T.CompareResult>;
  'sweeps.start': (p: In<'sweeps.start'>) => Promise<T.SweepStarted>;
  'plugins.list': (p: In<'plugins.list'>) => Promise<T.PluginSummary[]>;
  'plugins.get': (p: In<'plugins.get'>) => Promise<T.PluginDetail>;
  'plugins.tag': (p: In<'plugins.tag'>) => Promise<{ ref: string; tags: string[] }>;
  'plugins.alias': (p: In<'plugins.alias'>) => Promise<{ plugin: string; alias: string; version: number | null }>;
  'plugins.notes': (p: In<'plugins.notes'>) => Promise<{ ref: string; notes: string }>;
  /** job.done result: ExportResult. */
  'plugins.export': (p: In<'plugins.export'>) => Promise<T.JobStarted>;
  'plugins.importPeft': (p: In<'plugins.importPeft'>) => Promise<T.PluginVersionRow>;
  'plugins.showInFolder': (p: In<'plugins.showInFolder'>) => Promise<{ path: string; shown: boolean }>;
  'playground.predict': (p: In<'playground.predict'>) => Promise<T.PredictResult>;
  'system.gpu': (p: In<'system.gpu'>) => Promise<T.GpuStatus>;
  /** job.done result: CudaInstalled. */
  'system.installCuda': (p: In<'system.installCuda'>) => Promise<T.JobStarted>;
}

export type Result<M extends MethodName> = Awaited<ReturnType<Handlers[M]>>;

/** Typed on/off over the contract's events. */
export interface ServiceEvents {
  on<E extends EventName>(event: E, fn: (data: Events[E]) => void): void;
  off<E extends EventName>(event: E, fn: (data: Events[E]) => void): void;
}

export interface Service {
  handlers: Handlers;
  events: ServiceEvents;
  /** The open workspace's folder (a transport allows paths inside it). */
  readonly workspaceDir: string | null;
  close(): Promise<void>;
}

export interface ServiceOptions {
  /** Per-user folder for the service's own state (recent workspaces). */
  stateDir: string;
  /** Where system.installCuda puts the CUDA provider (default: stateDir). */
  dataDir?: string;
  transport?: 'ipc' | 'http';
  /** A workspace to open at once. */
  workspace?: string;
  /** Electron passes shell.showItemInFolder; without it showInFolder returns the path. */
  showInFolder?: (path: string) => void;
  /**
   * Starts the trainer (Electron: a utilityProcess). Passed on to trackRun, which uses it once native/store/track.ts
   * passes it on to trackRun.
   */
  startTrainer?: typeof startTrainer;
  /** Default training speed (tokens/s) for time estimates when no earlier run on the device measured one. */
  defaultTokensPerSec?: { cpu: number; cuda: number };
}

// ——— errors ———

import { toContractError } from './errors.js';

export { toContractError };

const notFound = (message: string): ContractError => new ContractError({ code: 'not-found', message });
const conflict = (message: string): ContractError => new ContractError({ code: 'conflict', message });

// ——— run logs ———

const LOG_FILE = 'train.log';

/** The log line of an event (progress about 50 times a run), or null. */
function logLine(event: EventName, data: unknown): string | null {
  if (event === 'run.status') {
    const d = data as Events['run.status'];
    return `status ${d.status}${d.reason ? ` — ${d.reason}` : ''}${d.plugin ? `; plugin ${d.plugin.name}@${d.plugin.version}` : ''}`;
  }
  if (event === 'run.progress') {
    const d = data as Events['run.progress'];
    const every = Math.max(1, Math.floor(d.totalSteps / 50));
    if (d.step % every !== 0 && d.step !== d.totalSteps && d.step !== 1) return null;
    return `step ${d.step}/${d.totalSteps} epoch ${d.epoch} loss ${d.loss.toFixed(4)} lr ${d.lr.toExponential(2)} grad-norm ${d.gradNorm.toFixed(3)} ${Math.round(d.tokensPerSec)} tok/s ETA ${Math.round(d.etaSeconds)} s`;
  }
  if (event === 'run.eval') {
    const d = data as Events['run.eval'];
    return `eval at step ${d.step}: ${Object.entries(d.metrics)
      .map(([k, v]) => `${k} ${v.toFixed(4)}`)
      .join(', ')}`;
  }
  return null;
}

// ——— helpers ———

const MODEL_TASK: Record<TaskKind, Task> = {
  classification: 'classification',
  'pair-classification': 'classification',
  regression: 'regression',
  'causal-lm': 'causal-lm',
  seq2seq: 'seq2seq-lm',
};

function appVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
      .version;
  } catch {
    return '0.0.0';
  }
}

function deltas(raw: unknown[], where: string): DeltaConfig[] {
  try {
    return parseDeltaConfig(raw, where);
  } catch (e) {
    throw new ContractError({
      code: 'bad-params',
      message: (e as Error).message,
      issues: [{ path: 'deltas', message: (e as Error).message }],
    });
  }
}

/** Guesses the task and column mapping from a header (exact names, then ignoring case). */
export function guessTask(
  columns: string[],
  rows: Record<string, string>[],
  file: string,
): { task: TaskKind; columns: ColumnMapping } | null {
  const has = (...names: string[]): boolean => names.some((n) => columns.some((c) => c.toLowerCase() === n));
  const order: TaskKind[] = [];
  if (has('prompt') && has('completion')) order.push('causal-lm');
  if (has('source') && has('target')) order.push('seq2seq');
  if (has('premise', 'sentence1', 'text_pair') && has('hypothesis', 'sentence2', 'text_pair') && has('label'))
    order.push('pair-classification');
  if (has('text', 'sentence') && has('label', 'score')) {
    const labelCol = columns.find((c) => ['label', 'score'].includes(c.toLowerCase()));
    const values = rows.map((r) => r[labelCol ?? 'label']).filter((v) => v !== undefined && v !== '');
    const numeric = values.length > 0 && values.every((v) => Number.isFinite(Number(v)));
    const fractional = numeric && values.some((v) => !Number.isInteger(Number(v)));
    order.push(fractional || (numeric && labelCol?.toLowerCase() === 'score') ? 'regression' : 'classification');
  }
  if (has('text')) order.push('causal-lm');
  for (const task of order) {
    try {
      return { task, columns: resolveColumns(task, {}, columns, file) };
    } catch {
      // try the next task that could fit
    }
  }
  return null;
}

async function previewFile(file: string, n: number): Promise<T.DatasetPreview> {
  const format = formatOf(file);
  const ctx = {
    file,
    format,
    encoding: undefined,
    maxBytes: DEFAULT_MAX_BYTES,
    result: { bytes: 0, sha256: '' },
    skipped: 0,
  };
  let columns: string[] = [];
  const rows: Record<string, string>[] = [];
  for await (const ev of readRows(ctx)) {
    if (ev.kind === 'header') columns = ev.columns;
    else {
      rows.push(
        Object.fromEntries(
          columns.map((c) => {
            const v = ev.get(c);
            return [c, v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v)];
          }),
        ),
      );
      if (rows.length >= n) break; // leaving the loop closes the reader
    }
  }
  return { path: file, format, columns, rows, guess: guessTask(columns, rows, file) };
}

interface RecentEntry {
  path: string;
  openedAt: string;
}

/** Creates the engine service. */
export function createService(opts: ServiceOptions): Service {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(100);
  const emit = <E extends EventName>(event: E, data: Events[E]): void => {
    emitter.emit(event, data);
    const line = logLine(event, data);
    if (line) writeLog((data as { runId: string }).runId, line);
  };
  /** A run's log: one line per event worth reading later, appended to <run>/train.log and sent as run.log. */
  const writeLog = (runId: string, line: string): void => {
    const text = `${new Date().toISOString()} ${line}`;
    try {
      if (ws) appendFileSync(join(ws.path(ws.getRun(runId).dir), LOG_FILE), `${text}\n`);
    } catch {
      /* a log line is not worth failing a run for */
    }
    emitter.emit('run.log', { runId, line: text });
  };
  const recentFile = join(opts.stateDir, 'recent-workspaces.json');
  const tps = opts.defaultTokensPerSec ?? { cpu: 2_000, cuda: 40_000 };
  let ws: Workspace | null = null;
  const sessions = new Map<number, { session: PluginSession; device: string; lock: Promise<unknown> }>();
  /** Runs waiting for the trainer (ids, FIFO), and the one training now. */
  const queue: string[] = [];
  let current: { runId: string; tracked: TrackedRun } | null = null;
  const finished = new Set<Promise<unknown>>();
  let closed = false;
  const trackOpts: { flushMs?: number; startTrainer?: typeof startTrainer } = {
    flushMs: 500,
    startTrainer: opts.startTrainer,
  };

  const need = (): Workspace => {
    if (!ws) throw conflict('no workspace is open: create or open one first (workspace.create / workspace.open)');
    return ws;
  };

  // ——— recent workspaces ———
  const readRecent = (): RecentEntry[] => {
    try {
      const r = JSON.parse(readFileSync(recentFile, 'utf8')) as unknown;
      return Array.isArray(r) ? (r as RecentEntry[]).filter((x) => typeof x?.path === 'string') : [];
    } catch {
      return [];
    }
  };
  const remember = (dir: string): void => {
    const list = [
      { path: dir, openedAt: new Date().toISOString() },
      ...readRecent().filter((r) => r.path !== dir),
    ].slice(0, 20);
    mkdirSync(opts.stateDir, { recursive: true });
    writeFileAtomic(recentFile, new TextEncoder().encode(`${JSON.stringify(list, null, 2)}\n`));
  };
  const recent = (): T.RecentWorkspace[] => readRecent().map((r) => ({ ...r, exists: existsSync(r.path) }));

  const closeSessions = async (): Promise<void> => {
    const all = [...sessions.values()];
    sessions.clear();
    await Promise.allSettled(all.map((s) => s.session.close()));
  };

  const useWorkspace = async (dir: string, create: boolean): Promise<T.WorkspaceInfo> => {
    const abs = resolve(dir);
    if (current || queue.length) {
      if (ws && resolve(ws.dir) === abs) return info(ws, []);
      throw conflict(
        `a run is training or queued in ${ws?.dir}: wait for it, or cancel it, before switching workspaces`,
      );
    }
    const next = create && !existsSync(join(abs, 'workspace.db')) ? Workspace.init(abs) : Workspace.open(abs);
    const interrupted = next.listRuns({ status: 'interrupted' }).map((r) => r.id);
    await closeSessions();
    ws?.close();
    ws = next;
    remember(next.dir);
    return info(next, interrupted);
  };
  const info = (w: Workspace, interrupted: string[]): T.WorkspaceInfo => ({
    path: w.dir,
    schemaVersion: Workspace.latestSchema,
    interrupted,
    counts: {
      models: w.listModels().length,
      datasets: w.listDatasets().length,
      runs: w.listRuns().length,
      plugins: w.listPlugins().length,
    },
  });

  // ——— jobs ———
  const startJob = (
    work: (progress: (fraction: number, message: string) => void) => Promise<unknown>,
  ): T.JobStarted => {
    const jobId = `job-${randomBytes(6).toString('hex')}`;
    const progress = (fraction: number, message: string): void => emit('job.progress', { jobId, fraction, message });
    // After the reply: the caller learns the id before any event names it.
    const p = new Promise<void>((r) => setImmediate(r))
      .then(() => work(progress))
      .then(
        (result) => emit('job.done', { jobId, result }),
        (e: unknown) => {
          const c = toContractError(e);
          emit('job.done', { jobId, error: { code: c.error.code, message: c.error.message } });
        },
      );
    finished.add(p);
    void p.finally(() => finished.delete(p));
    return { jobId };
  };

  // ——— runs ———
  const readRunFile = (w: Workspace, runId: string): RunFile => {
    const row = w.getRun(runId);
    const file = join(w.path(row.dir), 'run.json');
    if (!existsSync(file)) throw notFound(`${file}: the run's folder is gone; it cannot be started or resumed`);
    return JSON.parse(readFileSync(file, 'utf8')) as RunFile;
  };

  const forward =
    (runId: string, total: { steps: number }) =>
    (e: TrainEvent): void => {
      if (e.type === 'start') {
        total.steps = e.totalSteps;
        emit('run.status', {
          runId,
          status: 'running',
          reason: e.fallbackReason ? `CUDA not used: ${e.fallbackReason}` : null,
        });
      } else if (e.type === 'progress') {
        emit('run.progress', {
          runId,
          step: e.step,
          totalSteps: total.steps,
          epoch: e.epoch,
          loss: e.loss,
          lr: e.lr,
          gradNorm: e.gradNorm,
          tokensPerSec: e.tokensPerSec,
          etaSeconds: e.etaSeconds,
          rssBytes: e.rssBytes,
        });
      } else if (e.type === 'eval') emit('run.eval', { runId, step: e.step, metrics: e.metrics });
      else if (e.type === 'paused') emit('run.status', { runId, status: 'paused' });
      else if (e.type === 'resumed') emit('run.status', { runId, status: 'running' });
    };

  /** Starts the next queued run when the trainer is free (one trainer at a time). */
  const pump = (): void => {
    if (current || closed || !ws) return;
    const w = ws;
    const runId = queue.shift();
    if (runId === undefined) return;
    let tracked: TrackedRun;
    try {
      tracked = trackRun(w, readRunFile(w, runId), forward(runId, { steps: 0 }), trackOpts);
    } catch (e) {
      const message = toContractError(e).message;
      try {
        w.finishRun(runId, { status: 'failed', steps: w.getRun(runId).steps, reason: message });
      } catch {
        /* the event below still tells the UI */
      }
      emit('run.status', { runId, status: 'failed', reason: message });
      pump();
      return;
    }
    current = { runId, tracked };
    const p = tracked.done
      .then(
        ({ result, plugin }) => {
          const row = w.getRun(runId);
          writeFileAtomic(
            join(w.path(row.dir), 'result.json'),
            new TextEncoder().encode(`${JSON.stringify(result, null, 2)}\n`),
          );
          emit('run.status', {
            runId,
            status: row.status,
            reason: row.reason,
            plugin: plugin ? { name: plugin.plugin, version: plugin.version } : null,
          });
        },
        (e: Error) => emit('run.status', { runId, status: 'failed', reason: e.message }),
      )
      .finally(() => {
        current = null;
        pump();
      });
    finished.add(p);
    void p.finally(() => finished.delete(p));
  };

  const enqueue = (runId: string): number => {
    queue.push(runId);
    emit('run.status', { runId, status: 'queued' });
    const position = current ? queue.length : queue.length - 1;
    pump();
    return current?.runId === runId ? 0 : position;
  };

  /** Records a run (folder and run.json first, then the row) and queues it. */
  const createRun = (w: Workspace, cfg: RunConfig, sweep?: string): T.RunStarted => {
    const model = w.getModel(cfg.modelId);
    const dv = w.datasetVersion(cfg.datasetVersionId);
    const dsDir = w.path(dv.dir);
    const version = readDatasetVersion(dsDir);
    const ds = deltas(cfg.deltas, 'deltas');
    const methodName = ds.map((d) => d.method).join('+');
    const pluginName = cfg.plugin ?? safeName(`${dv.dataset}-${methodName}`);
    const id = Workspace.newRunId();
    const runDir = join(w.dir, 'runs', id);
    mkdirSync(runDir, { recursive: true });
    const config: TrainConfig = {
      model: w.modelPath(model),
      task: MODEL_TASK[version.task],
      labels: version.labels,
      deltas: ds,
      epochs: cfg.epochs,
      maxSteps: cfg.maxSteps,
      batchSize: cfg.batchSize,
      accumulation: cfg.accumulation,
      lr: cfg.lr,
      schedule: cfg.schedule,
      warmup: cfg.warmup,
      weightDecay: cfg.weightDecay,
      maxLength: cfg.maxLength,
      seed: cfg.seed,
      device: cfg.device,
      precision: cfg.precision,
      evalEvery: cfg.evalEvery,
      earlyStopping: cfg.earlyStopping,
      checkpointEvery: cfg.checkpointEvery,
      runDir,
    };
    const run: RunFile = {
      id,
      dataset: { dir: dsDir, digest: version.digest, task: version.task },
      config,
      plugin: pluginName,
    };
    writeRunFile(runDir, run);
    w.createRun({
      id,
      name: cfg.name ?? (sweep ? `${sweep}: ${methodName}` : undefined),
      config,
      method: methodName,
      modelId: model.id,
      datasetVersionId: dv.id,
      dir: relative(w.dir, runDir),
      totalParams: model.params ?? undefined,
    });
    const position = enqueue(id);
    return { runId: id, status: current?.runId === id ? 'running' : 'queued', position };
  };

  const estimate = (w: Workspace, cfg: RunConfig): T.RunEstimate => {
    const model = w.getModel(cfg.modelId);
    const dsDir = w.path(w.datasetVersion(cfg.datasetVersionId).dir);
    const version = readDatasetVersion(dsDir);
    const dir = w.modelPath(model);
    const { model: built, applied } = loadWithDeltas(
      dir,
      { task: MODEL_TASK[version.task], numLabels: version.labels?.length },
      deltas(cfg.deltas, 'deltas'),
      cfg.seed,
    );
    const rep = deltaReport(built, applied, { batch: cfg.batchSize, seq: cfg.maxLength });
    const rows = version.rows.train;
    // Mean token length: measured on the train split under the model's tokenizer when it is small enough to read
    // quickly, else about 4 characters per token.
    let meanLength: number;
    let lengthBasis: string;
    if (rows <= 50_000) {
      meanLength = tokenLengthStats(dsDir, TextTokenizer.fromFolder(dir)).mean;
      lengthBasis = 'mean token length measured on the train split';
    } else {
      const f = version.stats.fields;
      meanLength = Object.values(f).reduce((a, s) => a + (s?.meanChars ?? 0), 0) / 4;
      lengthBasis = 'mean length guessed at 4 characters per token';
    }
    const acc = cfg.accumulation;
    const stepsPerEpoch = Math.ceil(Math.ceil(rows / cfg.batchSize) / acc);
    const steps = Math.min(cfg.maxSteps ?? Infinity, cfg.epochs * stepsPerEpoch);
    const tokens = Math.round(
      Math.min(steps * cfg.batchSize * acc, rows * cfg.epochs) * Math.min(cfg.maxLength, meanLength),
    );
    const device: 'cpu' | 'cuda' = cfg.device === 'cuda' ? 'cuda' : 'cpu';
    // Speed: the fastest finished run of this model on this device, else the default for the device.
    const measured = w
      .listRuns({ status: 'finished' })
      .filter(
        (r) =>
          r.model_id === model.id &&
          r.device === device &&
          (r.tokens_per_sec ?? 0) > 0 &&
          r.method === applied.methods.map((m) => m.config.method).join('+'),
      );
    const speed = measured.length ? Math.max(...measured.map((r) => r.tokens_per_sec!)) : tps[device];
    const seconds = tokens / speed;
    const basis =
      `${tokens.toLocaleString('en-US')} tokens (${steps} steps × batch ${cfg.batchSize * acc}, ${lengthBasis}: ${meanLength.toFixed(1)}, capped at maxLength ${cfg.maxLength}) ` +
      `at ${Math.round(speed).toLocaleString('en-US')} tokens/s ${measured.length ? `measured by run ${measured[0].id} on ${device}` : `(an assumed default for ${device}; a finished run of this model and method replaces it with a measured speed)`}` +
      `${cfg.device === 'auto' ? '; device "auto" is estimated as the CPU' : ''}; evaluation and start-up not included`;
    return {
      trainableParams: rep.trainable_params,
      trainablePercent: rep.trainable_percent,
      backboneParams: rep.backbone_params,
      pluginBytes: rep.plugin_bytes,
      memoryBytes: rep.estimated_train_memory_bytes,
      memory: rep.estimate,
      byMethod: rep.by_method,
      device,
      steps,
      tokens,
      tokensPerSec: speed,
      secondsEstimate: seconds,
      basis,
    };
  };

  // ——— playground ———
  const sessionFor = async (
    w: Workspace,
    modelId: number,
    device: string,
  ): Promise<{ session: PluginSession; device: string; lock: Promise<unknown> }> => {
    const have = sessions.get(modelId);
    if (have && have.device === device) return have;
    if (have) {
      sessions.delete(modelId);
      await have.session.close();
    }
    const s = {
      session: await PluginSession.open(w.modelPath(w.getModel(modelId)), {
        device: device as 'auto' | 'cpu' | 'cuda',
      }),
      device,
      lock: Promise.resolve() as Promise<unknown>,
    };
    sessions.set(modelId, s);
    return s;
  };

  const handlers: Handlers = {
    'app.info': async () => ({
      version: appVersion(),
      transport: opts.transport ?? 'http',
      workspace: ws?.dir ?? null,
      recent: recent(),
    }),
    'workspace.create': async (p) => useWorkspace(p.path, true),
    'workspace.open': async (p) => useWorkspace(p.path, false),
    'workspace.recent': async () => recent(),
    // A workspace that failed to open (damaged) is checked by its path.
    'workspace.check': async (p) => checkWorkspace(p.path ?? need().dir, { repair: p.repair }),

    'models.import': async (p) => need().addModel(resolve(p.path), { copy: p.copy, name: p.name }),
    'models.list': async () => need().listModels(),
    'models.tree': async (p) => {
      const w = need();
      const dir = w.modelPath(w.getModel(p.modelId));
      if (p.deltas?.length) {
        const { model, applied } = loadWithDeltas(
          dir,
          { task: p.task, numLabels: p.numLabels },
          deltas(p.deltas, 'deltas'),
        );
        const report = deltaReport(model, applied, { batch: p.batch ?? 8, seq: p.seq ?? 128 });
        return { tree: moduleTree(model, applied.marked), task: model.task, report };
      }
      const model = loadModel(dir, { task: p.task, numLabels: p.numLabels });
      return { tree: moduleTree(model), task: model.task, report: null };
    },

    'datasets.preview': async (p) => previewFile(resolve(p.path), p.rows),
    'datasets.import': async (p) => {
      const w = need();
      return startJob(async (progress) => {
        progress(0, `reading ${basename(p.path)}`);
        const datasets = join(w.dir, 'datasets');
        mkdirSync(datasets, { recursive: true });
        const tmp = join(datasets, `.import-${randomBytes(4).toString('hex')}`);
        let version: DatasetVersion;
        try {
          version = await importDataset(resolve(p.path), tmp, {
            task: p.task,
            columns: p.columns as ColumnMapping,
            split: { validation: p.validationPath ? 0 : p.validationFraction, test: 0, seed: p.seed },
            files: p.validationPath ? { validation: resolve(p.validationPath) } : undefined,
          });
        } catch (e) {
          rmSync(tmp, { recursive: true, force: true });
          throw e;
        }
        progress(0.9, 'recording the version');
        // Content-addressed: importing the same data again reuses the folder.
        const dir = join(datasets, version.digest.slice(0, 16));
        if (existsSync(dir)) rmSync(tmp, { recursive: true, force: true });
        else renameSync(tmp, dir);
        const { datasetId, versionId } = w.addDatasetVersion(p.name, relative(w.dir, dir), version);
        progress(1, 'imported');
        const result: T.DatasetImportResult = {
          datasetId,
          versionId,
          digest: version.digest,
          task: version.task,
          rows: version.rows,
          labels: version.labels ?? null,
          columns: version.columns,
        };
        return result;
      });
    },
    'datasets.list': async () => need().listDatasets(),
    'datasets.stats': async (p) => {
      const w = need();
      const dir = w.path(w.datasetVersion(p.versionId).dir);
      const v = readDatasetVersion(dir);
      const tokens =
        p.modelId !== undefined
          ? tokenLengthStats(dir, TextTokenizer.fromFolder(w.modelPath(w.getModel(p.modelId))))
          : null;
      return {
        versionId: p.versionId,
        task: v.task,
        rows: v.rows,
        labels: v.labels ?? null,
        labelCounts: v.stats.labelCounts ?? null,
        labelRange: v.stats.labelRange ?? null,
        fields: v.stats.fields,
        duplicates: v.stats.duplicates,
        tokens,
      };
    },

    'runs.estimate': async (p) => estimate(need(), p),
    'runs.start': async (p) => createRun(need(), p),
    'runs.list': async (p) => need().listRuns({ status: p.status }),
    'runs.log': async (p) => {
      const w = need();
      const file = join(w.path(w.getRun(p.runId).dir), LOG_FILE);
      const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
      return { lines: lines.slice(-p.tail) };
    },
    'runs.get': async (p) => {
      const w = need();
      const run = w.getRun(p.runId);
      const plugin = w
        .listPlugins()
        .flatMap((pl) => w.showPlugin(pl.name).versions)
        .find((v) => v.run_id === run.id);
      const i = queue.indexOf(run.id);
      return {
        run,
        config: JSON.parse(run.config) as Record<string, unknown>,
        metricKeys: w.metricKeys(run.id),
        latest: w.latestMetrics(run.id),
        plugin: plugin ? { name: plugin.plugin, version: plugin.version } : null,
        queuePosition: i < 0 ? null : i + (current ? 1 : 0),
      };
    },
    'runs.metrics': async (p) => {
      const w = need();
      w.getRun(p.runId);
      const keys = p.keys ?? w.metricKeys(p.runId);
      const after = p.afterStep ?? -1;
      return {
        runId: p.runId,
        series: Object.fromEntries(keys.map((k) => [k, w.metricSeries(p.runId, k).filter((x) => x.step > after)])),
      };
    },
    'runs.pause': async (p) => {
      const w = need();
      if (current?.runId !== p.runId)
        throw conflict(
          `run ${p.runId} is ${w.getRun(p.runId).status}, not training: only the run training now can be paused`,
        );
      current.tracked.job.pause();
      return { runId: p.runId, status: 'paused' };
    },
    'runs.resume': async (p) => {
      const w = need();
      const row = w.getRun(p.runId);
      if (current?.runId === p.runId) {
        current.tracked.job.resume();
        return { runId: p.runId, status: 'running' };
      }
      if (queue.includes(p.runId)) return { runId: p.runId, status: 'queued' };
      if (!['interrupted', 'cancelled', 'paused', 'queued'].includes(row.status)) {
        throw conflict(
          `run ${p.runId} is ${row.status}: only a paused, interrupted or cancelled run can be resumed${row.status === 'finished' ? '; start a new run to train again' : ''}`,
        );
      }
      // From its last checkpoint: the trainer continues where the run folder says.
      readRunFile(w, p.runId);
      w.setRunStatus(p.runId, 'queued');
      enqueue(p.runId);
      return { runId: p.runId, status: current?.runId === p.runId ? 'running' : 'queued' };
    },
    'runs.cancel': async (p) => {
      const w = need();
      const i = queue.indexOf(p.runId);
      if (i >= 0) {
        queue.splice(i, 1);
        w.setRunStatus(p.runId, 'cancelled', 'cancelled before it started');
        emit('run.status', { runId: p.runId, status: 'cancelled', reason: 'cancelled before it started' });
        return { runId: p.runId, status: 'cancelled' };
      }
      if (current?.runId !== p.runId)
        throw conflict(`run ${p.runId} is ${w.getRun(p.runId).status}: it is neither training nor queued`);
      // A paused trainer must step once more to see the cancel.
      current.tracked.job.cancel();
      current.tracked.job.resume();
      return { runId: p.runId, status: 'running' as RunStatus };
    },
    'runs.compare': async (p) => {
      const w = need();
      const runs = p.runIds.map((id) => {
        const r = w.getRun(id);
        const m = w.latestMetrics(r.id);
        return {
          id: r.id,
          name: r.name,
          method: r.method,
          status: r.status,
          trainable_params: r.trainable_params,
          trainable_percent: r.trainable_params && r.total_params ? (100 * r.trainable_params) / r.total_params : null,
          steps: r.steps,
          train_seconds: r.train_seconds,
          tokens_per_sec: r.tokens_per_sec,
          metrics: Object.fromEntries(
            Object.entries(m)
              .filter(([k]) => k.startsWith('eval/'))
              .map(([k, x]) => [k.slice(5), x]),
          ),
        };
      });
      return { runs, metricKeys: [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort() };
    },
    'sweeps.start': async (p) => {
      const w = need();
      const name = p.name ?? `sweep ${new Date().toISOString().slice(0, 16)}`;
      // Every variant is checked before any is queued, so a bad one queues nothing.
      const configs = p.variants.map(
        (v) =>
          ({ ...p.base, ...Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) }) as RunConfig,
      );
      configs.forEach((c) => deltas(c.deltas, 'deltas'));
      return { runIds: configs.map((c) => createRun(w, c, name).runId) };
    },

    'plugins.list': async () => need().listPlugins(),
    'plugins.get': async (p) => {
      const w = need();
      const shown = w.showPlugin(p.name);
      const lineage = shown.versions.map((v) => {
        const l = w.lineage(`${p.name}@${v.version}`);
        return {
          version: v.version,
          model: l.model ? { id: l.model.id, name: l.model.name, path: l.model.path } : null,
          dataset: l.dataset ? { id: l.dataset.id, dataset: l.dataset.dataset, digest: l.dataset.digest } : null,
          run: l.run ? { id: l.run.id, status: l.run.status, method: l.run.method } : null,
        };
      });
      return { ...shown, lineage };
    },
    'plugins.tag': async (p) => ({ ref: p.ref, tags: need().tag(p.ref, p.add, p.remove) }),
    'plugins.alias': async (p) => {
      const w = need();
      if (p.remove) {
        const name = p.ref.split('@')[0];
        w.removeAlias(name, p.alias);
        return { plugin: name, alias: p.alias, version: null };
      }
      const row = w.setAlias(p.ref, p.alias);
      return { plugin: row.plugin, alias: p.alias, version: row.version };
    },
    'plugins.notes': async (p) => {
      need().setNotes(p.ref, p.notes);
      return { ref: p.ref, notes: p.notes };
    },
    'plugins.export': async (p) => {
      const w = need();
      w.resolvePlugin(p.ref); // an unknown plugin is an answer, not a failed job
      // In a worker thread: a multi-GB export must not stall the thread that answers the UI.
      return startJob(async (progress) =>
        exportInWorker(
          w.dir,
          {
            plugin: p.ref,
            format: p.format,
            folder: p.folder ? resolve(p.folder) : undefined,
            name: p.name,
            onnxMode: p.onnxMode,
            dtype: p.dtype,
            overwrite: p.overwrite,
          },
          progress,
        ),
      );
    },
    'plugins.importPeft': async (p) => {
      const w = need();
      const m = w.getModel(p.modelId);
      const { meta, tensors } = importPeft(resolve(p.path), w.modelPath(m));
      const name = p.name ?? safeName(`${m.name}-${meta.methods.map((x) => x.method).join('+')}-peft`);
      return w.registerPlugin({
        name,
        tensors,
        meta: { ...meta, base: { ...meta.base, name: m.name } },
        modelId: m.id,
        source: `peft:${resolve(p.path)}`,
      });
    },
    'plugins.showInFolder': async (p) => {
      const path = resolve(p.path);
      if (!existsSync(path)) throw notFound(`${path} does not exist (was it moved or deleted?)`);
      if (opts.showInFolder) {
        opts.showInFolder(path);
        return { path, shown: true };
      }
      return { path, shown: false };
    },

    'playground.predict': async (p) => {
      const w = need();
      const t0 = performance.now();
      const loaded = p.plugins.map((ref) => w.loadPlugin(ref));
      const s = await sessionFor(w, p.modelId, p.device);
      // One prediction at a time per session: attach/detach is state of the session.
      const run = async (): Promise<T.PredictResult> => {
        s.session.detach();
        const attached = loaded.length ? s.session.attach(loaded) : [];
        const inputs = p.inputs.map((text) => (p.textPair !== undefined ? { text, text_pair: p.textPair } : text));
        const withPlugins = loaded.length ? await s.session.predict(inputs, { maxNewTokens: p.maxNewTokens }) : null;
        let base: T.Prediction[] | null = null;
        let baseMessage: string | null = null;
        if (p.compareBase || !loaded.length) {
          try {
            base = await s.session.predict(inputs, { base: true, maxNewTokens: p.maxNewTokens });
          } catch (e) {
            baseMessage = (e as Error).message;
          }
        }
        return {
          modelId: p.modelId,
          task: s.session.task,
          attached: attached.map((a) => ({
            name: a.name,
            task: a.task,
            methods: a.methods.map((m) => m.method),
            baseMatches: a.baseMatches,
          })),
          rows: p.inputs.map((input, i) => ({ input, plugins: withPlugins?.[i] ?? null, base: base?.[i] ?? null })),
          baseMessage,
          ms: performance.now() - t0,
        };
      };
      const r = s.lock.then(run, run);
      s.lock = r.catch(() => undefined);
      return r;
    },

    'system.gpu': async (): Promise<T.GpuStatus> => gpuStatus({ dataDir: opts.dataDir ?? opts.stateDir }),
    'system.installCuda': async () =>
      startJob(async (progress) => {
        const dataDir = opts.dataDir ?? opts.stateDir;
        const installed = await installCudaProvider({
          dataDir,
          onProgress: (p) =>
            progress(
              p.fraction,
              `${p.phase}: ${(p.bytes / 1e6).toFixed(1)}${p.total ? ` of ${(p.total / 1e6).toFixed(1)}` : ''} MB`,
            ),
        });
        // Next to onnxruntime's core library is where it loads providers from; a read-only install says why not.
        return { ...installed, activation: activateCudaProvider(dataDir) };
      }),
  };

  // Every handler's errors leave as ContractErrors.
  const wrapped = Object.fromEntries(
    Object.entries(handlers).map(([k, fn]) => [
      k,
      async (p: unknown) => {
        if (closed) throw conflict('the service is closed');
        try {
          return await (fn as (p: unknown) => Promise<unknown>)(p);
        } catch (e) {
          throw toContractError(e);
        }
      },
    ]),
  ) as unknown as Handlers;

  if (opts.workspace) {
    const dir = resolve(opts.workspace);
    ws = existsSync(join(dir, 'workspace.db')) ? Workspace.open(dir) : Workspace.init(dir);
    remember(ws.dir);
  }

  return {
    handlers: wrapped,
    events: {
      on: (event, fn) => void emitter.on(event, fn),
      off: (event, fn) => void emitter.off(event, fn),
    },
    get workspaceDir() {
      return ws?.dir ?? null;
    },
    async close() {
      if (closed) return;
      closed = true;
      // The app is closing: the training run stops after its step and, like the queued ones, is recorded as
      // interrupted (not cancelled: nobody chose to stop it), so the Runs page offers to resume it.
      const stopped = [...queue, ...(current ? [current.runId] : [])];
      queue.length = 0;
      if (current) {
        current.tracked.job.cancel();
        current.tracked.job.resume();
      }
      await Promise.allSettled([...finished]);
      for (const id of stopped) {
        try {
          if (ws && ['queued', 'cancelled'].includes(ws.getRun(id).status))
            ws.setRunStatus(id, 'interrupted', 'the app was closed during the run; resume it');
        } catch {
          /* the store is what it is; check reports the rest */
        }
      }
      await closeSessions();
      ws?.close();
      ws = null;
      emitter.removeAllListeners();
    },
  };
}
