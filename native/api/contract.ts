// The one contract between the UI and the engine: every method with a runtime schema for its parameters, and every
// event. Both transports — Electron IPC (electron/) and HTTP + WebSocket (`delta-studio serve`, native/api/server.ts)
// — validate against it before anything runs, and the renderer imports only its *types*.
import { z } from 'zod';

const id = z.number().int().min(1);
const text = (max = 10_000) => z.string().max(max);
const name = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[\p{L}\p{N}._-]+$/u, 'letters, digits, ".", "-" or "_" only');
const path = z.string().min(1).max(4096);
const task = z.enum(['classification', 'pair-classification', 'regression', 'causal-lm', 'seq2seq']);
const modelTask = z.enum(['classification', 'regression', 'causal-lm', 'seq2seq-lm']);
const device = z.enum(['auto', 'cpu', 'cuda']);
/** A delta config as native/delta reads it ({method, …keys}); the engine checks the keys per method. */
const delta = z.object({ method: z.string().min(1).max(40) }).catchall(z.unknown());
const columns = z
  .object({
    text: z.string(),
    text_pair: z.string(),
    label: z.string(),
    prompt: z.string(),
    completion: z.string(),
    source: z.string(),
    target: z.string(),
  })
  .partial();
const runStatus = z.enum(['queued', 'running', 'paused', 'finished', 'failed', 'diverged', 'interrupted', 'cancelled']);

/** Everything a run needs; defaults are the CLI's. */
export const runConfig = z
  .object({
    modelId: id,
    datasetVersionId: id,
    deltas: z.array(delta).min(1).max(8),
    plugin: name.optional(),
    name: text(200).optional(),
    epochs: z.number().int().min(1).max(1000).default(3),
    maxSteps: z.number().int().min(1).max(10_000_000).optional(),
    batchSize: z.number().int().min(1).max(4096).default(16),
    accumulation: z.number().int().min(1).max(1024).default(1),
    lr: z.number().positive().max(10).default(1e-3),
    schedule: z.enum(['linear', 'cosine', 'constant']).default('linear'),
    warmup: z.number().min(0).default(0.06),
    weightDecay: z.number().min(0).max(1).default(0.01),
    maxLength: z.number().int().min(4).max(32_768).default(128),
    seed: z.number().int().min(0).default(0),
    device: device.default('auto'),
    precision: z.enum(['float32', 'float16']).default('float32'),
    evalEvery: z.number().int().min(1).optional(),
    checkpointEvery: z.number().int().min(1).default(50),
    earlyStopping: z
      .object({ metric: z.string(), patience: z.number().int().min(1) })
      .strict()
      .optional(),
  })
  .strict(); // strict: a misspelt option is an error, not a silently ignored default
export type RunConfig = z.infer<typeof runConfig>;

interface MethodSpec<P extends z.ZodType> {
  params: P;
  doc: string;
  /** Parameters that are file-system paths: a server checks them against the folders it allows. */
  paths?: (p: z.infer<P>) => (string | undefined)[];
  /** Long work: the method returns {jobId} at once and reports job.progress / job.done events. */
  job?: boolean;
}
const method = <P extends z.ZodType>(spec: MethodSpec<P>): MethodSpec<P> => spec;
const none = z.object({}).strict();

export const METHODS = {
  'app.info': method({ params: none, doc: 'version, transport, open workspace, recent workspaces' }),
  'workspace.create': method({
    params: z.object({ path }).strict(),
    doc: 'create (or open) a workspace folder',
    paths: (p) => [p.path],
  }),
  'workspace.open': method({
    params: z.object({ path }).strict(),
    doc: 'open a workspace (migrating an older one); runs left running are marked interrupted',
    paths: (p) => [p.path],
  }),
  'workspace.recent': method({ params: none, doc: 'recently opened workspaces, newest first' }),
  'workspace.check': method({
    params: z.object({ path: path.optional(), repair: z.boolean().default(false) }).strict(),
    doc: 'verify database and files (the open workspace, or one that failed to open); repair what is safe',
    paths: (p) => [p.path],
  }),

  'models.import': method({
    params: z.object({ path, copy: z.boolean().default(false), name: text(100).optional() }).strict(),
    doc: 'record a Hugging Face model folder',
    paths: (p) => [p.path],
  }),
  'models.list': method({ params: none, doc: 'models of the workspace' }),
  'models.tree': method({
    params: z
      .object({
        modelId: id,
        task: modelTask.optional(),
        numLabels: z.number().int().min(1).max(100_000).optional(),
        deltas: z.array(delta).max(8).optional(),
        batch: z.number().int().min(1).optional(),
        seq: z.number().int().min(1).optional(),
      })
      .strict(),
    doc: 'module tree, with the modules a delta config modifies marked and its report (trainable params, %, plugin bytes, memory)',
  }),

  'datasets.preview': method({
    params: z.object({ path, rows: z.number().int().min(1).max(200).default(20) }).strict(),
    doc: 'format, columns and first rows of a data file, and a guess of task and column mapping',
    paths: (p) => [p.path],
  }),
  'datasets.import': method({
    params: z
      .object({
        path,
        name,
        task,
        columns: columns.default({}),
        validationPath: path.optional(),
        validationFraction: z.number().min(0).max(0.9).default(0.1),
        seed: z.number().int().min(0).default(0),
      })
      .strict(),
    doc: 'import a data file as a new dataset version',
    paths: (p) => [p.path, p.validationPath],
    job: true,
  }),
  'datasets.list': method({ params: none, doc: 'datasets and their versions' }),
  'datasets.stats': method({
    params: z.object({ versionId: id, modelId: id.optional() }).strict(),
    doc: 'rows per split, label distribution, and (with a model) the token-length histogram',
  }),

  'runs.estimate': method({
    params: runConfig,
    doc: 'before starting: trainable params and %, plugin size, memory and time estimate on the chosen device',
  }),
  'runs.start': method({ params: runConfig, doc: 'queue a run (it starts when the trainer is free)' }),
  'runs.list': method({
    params: z.object({ status: runStatus.optional() }).strict(),
    doc: 'runs with status, method and latest metrics',
  }),
  'runs.get': method({
    params: z.object({ runId: z.string().min(1).max(64) }).strict(),
    doc: 'one run: config, status, timings, metric keys',
  }),
  'runs.log': method({
    params: z
      .object({ runId: z.string().min(1).max(64), tail: z.number().int().min(1).max(100_000).default(2000) })
      .strict(),
    doc: "the last lines of a run's log (status changes, progress, evaluations)",
  }),
  'runs.metrics': method({
    params: z
      .object({
        runId: z.string().min(1).max(64),
        keys: z.array(z.string()).max(64).optional(),
        afterStep: z.number().int().min(0).optional(),
      })
      .strict(),
    doc: 'metric series (steps and values) after a step',
  }),
  'runs.pause': method({
    params: z.object({ runId: z.string().min(1).max(64) }).strict(),
    doc: 'hold a running run between steps',
  }),
  'runs.resume': method({
    params: z.object({ runId: z.string().min(1).max(64) }).strict(),
    doc: 'continue a paused run, or an interrupted or cancelled one from its checkpoint',
  }),
  'runs.cancel': method({
    params: z.object({ runId: z.string().min(1).max(64) }).strict(),
    doc: 'stop after the current step (resumable), or drop it from the queue',
  }),
  'runs.compare': method({
    params: z.object({ runIds: z.array(z.string().min(1).max(64)).min(1).max(64) }).strict(),
    doc: 'quality vs trainable % vs time, and every eval metric, side by side',
  }),
  'sweeps.start': method({
    params: z
      .object({ base: runConfig, variants: z.array(runConfig.partial()).min(1).max(64), name: text(200).optional() })
      .strict(),
    doc: 'queue one run per variant (methods or hyperparameters) on one dataset',
  }),

  'plugins.list': method({ params: none, doc: 'plugins with versions and aliases' }),
  'plugins.get': method({
    params: z.object({ name }).strict(),
    doc: 'versions, aliases, tags, notes, exports and lineage of a plugin',
  }),
  'plugins.tag': method({
    params: z
      .object({
        ref: z.string().min(1).max(200),
        add: z.array(text(64)).default([]),
        remove: z.array(text(64)).default([]),
      })
      .strict(),
    doc: 'add or remove tags of a version',
  }),
  'plugins.alias': method({
    params: z
      .object({ ref: z.string().min(1).max(200), alias: z.string().min(1).max(64), remove: z.boolean().default(false) })
      .strict(),
    doc: 'point an alias at a version, or remove it',
  }),
  'plugins.notes': method({
    params: z.object({ ref: z.string().min(1).max(200), notes: text(100_000) }).strict(),
    doc: 'set the notes of a version',
  }),
  'plugins.export': method({
    params: z
      .object({
        ref: z.string().min(1).max(200),
        format: z.enum(['peft', 'merged', 'onnx', 'bundle']),
        folder: path.optional(),
        name: z.string().min(1).max(200).optional(),
        onnxMode: z.enum(['baked', 'inputs']).optional(),
        dtype: z.enum(['float32', 'source']).optional(),
        overwrite: z.boolean().default(false),
      })
      .strict(),
    doc: 'one-click export of a version',
    paths: (p) => [p.folder],
    job: true,
  }),
  'plugins.importPeft': method({
    params: z.object({ path, modelId: id, name: name.optional() }).strict(),
    doc: 'a PEFT adapter folder as a plugin',
    paths: (p) => [p.path],
  }),
  'plugins.showInFolder': method({
    params: z.object({ path }).strict(),
    doc: 'reveal a file in the system file manager (desktop only)',
    paths: (p) => [p.path],
  }),

  'playground.predict': method({
    params: z
      .object({
        modelId: id,
        plugins: z.array(z.string().min(1).max(200)).max(8),
        inputs: z.array(text(20_000)).min(1).max(32),
        textPair: text(20_000).optional(),
        compareBase: z.boolean().default(true),
        maxNewTokens: z.number().int().min(1).max(512).default(32),
        device: device.default('auto'),
      })
      .strict(),
    doc: 'predictions of base and base + plugins side by side; switching plugins does not reload the base',
  }),

  'system.gpu': method({
    params: none,
    doc: 'NVIDIA GPU present? CUDA provider of onnxruntime present and loadable? what is missing and how to get it',
  }),
  'system.installCuda': method({
    params: none,
    doc: 'download and verify the CUDA provider into the app data folder',
    job: true,
  }),
} as const;

export type MethodName = keyof typeof METHODS;
export type Params<M extends MethodName> = z.input<(typeof METHODS)[M]['params']>;

/** Events the engine pushes to every connected UI. */
export interface Events {
  'run.status': {
    runId: string;
    status: z.infer<typeof runStatus>;
    reason?: string | null;
    plugin?: { name: string; version: number } | null;
  };
  'run.progress': {
    runId: string;
    step: number;
    totalSteps: number;
    epoch: number;
    loss: number;
    lr: number;
    gradNorm: number;
    tokensPerSec: number;
    etaSeconds: number;
    rssBytes: number;
  };
  'run.eval': { runId: string; step: number; metrics: Record<string, number> };
  'run.log': { runId: string; line: string };
  'job.progress': { jobId: string; fraction: number; message: string };
  'job.done': { jobId: string; result?: unknown; error?: { code: string; message: string } };
}
export type EventName = keyof Events;
export const EVENT_NAMES: EventName[] = [
  'run.status',
  'run.progress',
  'run.eval',
  'run.log',
  'job.progress',
  'job.done',
];

/** An error as it crosses a transport: a stable code and a message that says what to do next. */
export interface ApiError {
  code:
    'bad-params' | 'not-found' | 'path-outside' | 'unauthorized' | 'conflict' | 'failed' | 'unknown-method' | 'damaged';
  message: string;
  /** For bad-params: which parameter, and what was expected. */
  issues?: { path: string; message: string }[];
}

export class ContractError extends Error {
  constructor(readonly error: ApiError) {
    super(error.message);
    this.name = 'ContractError';
  }
}

/** Validates a call: the method must exist and its parameters fit its schema (defaults filled in). */
export function validateCall<M extends MethodName>(
  methodName: string,
  params: unknown,
): { method: M; params: z.infer<(typeof METHODS)[M]['params']> } {
  if (!Object.hasOwn(METHODS, methodName)) {
    throw new ContractError({ code: 'unknown-method', message: `unknown method "${methodName}"` });
  }
  const spec = METHODS[methodName as M];
  const r = spec.params.safeParse(params ?? {});
  if (!r.success) {
    const issues = r.error.issues.map((i) => ({ path: i.path.join('.') || '(params)', message: i.message }));
    throw new ContractError({
      code: 'bad-params',
      message: `${methodName}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      issues,
    });
  }
  return { method: methodName as M, params: r.data as z.infer<(typeof METHODS)[M]['params']> };
}

/** The paths a validated call names (for a transport's folder checks). */
export function pathsOf(methodName: MethodName, params: unknown): string[] {
  const spec = METHODS[methodName] as MethodSpec<z.ZodType>;
  return (spec.paths?.(params) ?? []).filter((p): p is string => typeof p === 'string');
}
