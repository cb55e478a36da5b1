// Every method of the contract: its parameters' runtime schema, what it returns, and whether it names paths (a
// server checks them) or runs as a job. Both transports — Electron IPC (electron/) and HTTP + WebSocket
// (`delta-studio serve`) — validate calls here before anything runs.
import { z } from 'zod';
import { ContractError } from './errors.js';
import { chatTemplate, deltaConfig, oneLine, pluginName, pluginRef, runConfig, runId } from './run-config.js';
import {
  CHAT_ROLES,
  COLUMN_ROLES,
  DEVICES,
  EXPORT_FORMATS,
  HUB_REPO_ID,
  HUB_REVISION,
  RUN_STATUSES,
  TASKS,
} from './vocabulary.js';
import type * as T from './types.js';

const id = z.number().int().min(1);
/** Free text (notes, inputs): any characters, newlines and tabs included. */
const text = (max = 10_000) => z.string().max(max);
/** A file-system path: no real one holds a control character, and a NUL would reach the file system as a 500. */
const path = oneLine(4096, 'a path').min(1);
/** A name the user sees on one line (a tag, a label, a column, a metric). */
const name = (max: number) => oneLine(max, 'a name').min(1);
const task = z.enum(TASKS);
const device = z.enum(DEVICES);
const columns = z.object(Object.fromEntries(COLUMN_ROLES.map((r) => [r, oneLine(1000, 'a column name')]))).partial();
/** Aliases as the store names them ("best", "prod"). */
const alias = z
  .string()
  .max(64)
  .regex(/^[A-Za-z][A-Za-z0-9_-]*$/, 'an alias starts with a letter and holds only letters, digits, "-" and "_"');
const tag = name(64).refine((t) => t.trim() !== '', 'a tag must not be blank');

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
    params: z.object({ path, copy: z.boolean().default(false), name: name(100).optional() }).strict(),
    doc: 'record a Hugging Face model folder',
    paths: (p) => [p.path],
  }),
  'models.list': method({ params: none, doc: 'models of the workspace' }),
  'models.pull': method({
    params: z
      .object({
        repo: z
          .string()
          .max(200)
          .regex(HUB_REPO_ID, 'a model on the Hugging Face Hub is named "org/name" (letters, digits, "-", "_", ".")'),
        revision: z
          .string()
          .max(200)
          .regex(HUB_REVISION, 'a revision is a branch, a tag, a commit or "refs/pr/N"')
          .default('main'),
        /** For gated or private models; used for this download only, never stored, echoed or logged. */
        token: z
          .string()
          .max(512)
          .regex(/^[\x21-\x7e]+$/, 'a token is one word of printable characters')
          .optional(),
        name: name(100).optional(),
      })
      .strict(),
    doc: 'download a model from the Hugging Face Hub into its cache (resumable, checked) and record it',
    job: true,
  }),
  'models.tree': method({
    params: z
      .object({
        modelId: id,
        task: task.optional(),
        numLabels: z.number().int().min(1).max(100_000).optional(),
        deltas: z.array(deltaConfig).max(8).optional(),
        batch: z.number().int().min(1).max(4096).optional(),
        seq: z.number().int().min(1).max(32_768).optional(),
      })
      .strict(),
    doc: 'module tree, with the modules a delta config modifies marked and its report (trainable params, %, plugin bytes, memory)',
  }),

  'datasets.preview': method({
    params: z
      .object({
        path,
        rows: z.number().int().min(1).max(200).default(20),
        /** A chat: the task and mapping to show the first conversation with (else the guess), and the model whose
         * chat template renders it. */
        task: task.optional(),
        columns: columns.optional(),
        modelId: id.optional(),
        chatTemplate: chatTemplate.optional(),
      })
      .strict(),
    doc: 'format, columns and first rows of a data file, a guess of task and column mapping, and for a chat the first conversation (rendered with a model’s chat template)',
    paths: (p) => [p.path],
  }),
  'datasets.import': method({
    params: z
      .object({
        path,
        name: pluginName,
        task,
        columns: columns.default({}),
        validationPath: path.optional(),
        validationFraction: z.number().min(0).max(0.9).default(0.1),
        seed: z.number().int().min(0).default(0),
        /** A CSV/TSV file without a header line: its column names, in order. */
        headerless: z.array(z.string().min(1).max(200)).min(1).max(1000).optional(),
        testPath: path.optional(),
      })
      .strict(),
    doc: 'import a data file as a new dataset version (a held-out test split from its own file, if given)',
    paths: (p) => [p.path, p.validationPath, p.testPath],
    job: true,
  }),
  'datasets.list': method({ params: none, doc: 'datasets and their versions' }),
  'datasets.stats': method({
    params: z.object({ versionId: id, modelId: id.optional(), chatTemplate: chatTemplate.optional() }).strict(),
    doc: 'rows per split, label distribution, and (with a model) the token-length histogram',
  }),

  'runs.estimate': method({
    params: runConfig,
    doc: 'before starting: trainable params and %, plugin size, memory and time estimate on the chosen device',
  }),
  'runs.start': method({ params: runConfig, doc: 'queue a run (it starts when the trainer is free)' }),
  'runs.list': method({
    params: z.object({ status: z.enum(RUN_STATUSES).optional() }).strict(),
    doc: 'runs with status, method and latest metrics',
  }),
  'runs.get': method({
    params: z.object({ runId }).strict(),
    doc: 'one run: config, status, timings, metric keys',
  }),
  'runs.log': method({
    params: z.object({ runId, tail: z.number().int().min(1).max(100_000).default(2000) }).strict(),
    doc: "the last lines of a run's log (status changes, progress, evaluations)",
  }),
  'runs.metrics': method({
    params: z
      .object({ runId, keys: z.array(name(200)).max(64).optional(), afterStep: z.number().int().min(0).optional() })
      .strict(),
    doc: 'metric series (steps and values) after a step',
  }),
  'runs.pause': method({ params: z.object({ runId }).strict(), doc: 'hold a running run between steps' }),
  'runs.resume': method({
    params: z.object({ runId }).strict(),
    doc: 'continue a paused run, or an interrupted or cancelled one from its checkpoint',
  }),
  'runs.cancel': method({
    params: z.object({ runId }).strict(),
    doc: 'stop after the current step (resumable), or drop it from the queue',
  }),
  'runs.compare': method({
    params: z.object({ runIds: z.array(runId).min(1).max(64) }).strict(),
    doc: 'quality vs trainable % vs time, and every eval metric, side by side',
  }),
  'sweeps.start': method({
    params: z
      .object({ base: runConfig, variants: z.array(runConfig.partial()).min(1).max(64), name: name(200).optional() })
      .strict(),
    doc: 'queue one run per variant (methods or hyperparameters) on one dataset',
  }),

  'plugins.list': method({ params: none, doc: 'plugins with versions and aliases' }),
  'plugins.get': method({
    params: z.object({ name: pluginName }).strict(),
    doc: 'versions, aliases, tags, notes, exports and lineage of a plugin',
  }),
  'plugins.tag': method({
    params: z
      .object({ ref: pluginRef, add: z.array(tag).max(64).default([]), remove: z.array(tag).max(64).default([]) })
      .strict(),
    doc: 'add or remove tags of a version',
  }),
  'plugins.alias': method({
    params: z.object({ ref: pluginRef, alias, remove: z.boolean().default(false) }).strict(),
    doc: 'point an alias at a version, or remove it',
  }),
  'plugins.notes': method({
    params: z.object({ ref: pluginRef, notes: text(100_000) }).strict(),
    doc: 'set the notes of a version',
  }),
  'plugins.export': method({
    params: z
      .object({
        ref: pluginRef,
        format: z.enum(EXPORT_FORMATS),
        folder: path.optional(),
        /** The file or folder to write in `folder`. */
        name: oneLine(200, 'an export name').min(1).optional(),
        onnxMode: z.enum(['baked', 'inputs']).optional(),
        dtype: z.enum(['float32', 'source']).optional(),
        overwrite: z.boolean().default(false),
        /** The base model folder, when the plugin does not record one (or another base, with force). */
        model: path.optional(),
        force: z.boolean().default(false),
      })
      .strict(),
    doc: 'one-click export of a version',
    paths: (p) => [p.folder, p.model],
    job: true,
  }),
  'plugins.importPeft': method({
    params: z
      .object({
        path,
        modelId: id,
        name: pluginName.optional(),
        task: task.optional(),
        labels: z.array(name(200)).min(1).max(100_000).optional(),
      })
      .strict(),
    doc: 'a PEFT adapter folder as a plugin (task and labels when its config does not say)',
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
        plugins: z.array(pluginRef).max(8),
        inputs: z.array(text(20_000)).min(1).max(32),
        textPair: text(20_000).optional(),
        compareBase: z.boolean().default(true),
        maxNewTokens: z.number().int().min(1).max(512).default(32),
        device: device.default('auto'),
      })
      .strict(),
    doc: 'predictions of base and base + plugins side by side; switching plugins does not reload the base',
  }),

  'playground.chat': method({
    params: z
      .object({
        modelId: id,
        plugins: z.array(pluginRef).max(8),
        /** The conversation so far, ending with the user's turn. */
        messages: z
          .array(z.object({ role: z.enum(CHAT_ROLES), content: text(20_000).min(1) }).strict())
          .min(1)
          .max(200),
        compareBase: z.boolean().default(true),
        maxNewTokens: z.number().int().min(1).max(2048).default(128),
        device: device.default('auto'),
        /** The chat template (default: the one the plugins trained with, else the model's own). */
        chatTemplate: chatTemplate.optional(),
        /** Names the playground.token events of this reply (the caller's own id). */
        streamId: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, 'a stream id holds 1 to 64 letters, digits, "-" and "_"')
          .optional(),
      })
      .strict(),
    doc: "the assistant's next reply, base and base + plugins side by side, streamed as playground.token events",
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
/** Parameters as a caller writes them (defaults may be left out). */
export type Params<M extends MethodName> = z.input<(typeof METHODS)[M]['params']>;
/** Parameters as a handler receives them (validated, defaults filled in). */
export type ValidParams<M extends MethodName> = z.infer<(typeof METHODS)[M]['params']>;

/** What each method answers. A job method answers {jobId}; its outcome is in JobResults. */
export interface Results {
  'app.info': T.AppInfo;
  'workspace.create': T.WorkspaceInfo;
  'workspace.open': T.WorkspaceInfo;
  'workspace.recent': T.RecentWorkspace[];
  'workspace.check': T.CheckReport;
  'models.import': T.Model;
  'models.list': T.Model[];
  'models.tree': T.ModelTreeResult;
  'models.pull': T.JobStarted;
  'datasets.preview': T.DatasetPreview;
  'datasets.import': T.JobStarted;
  'datasets.list': T.DatasetSummary[];
  'datasets.stats': T.DatasetStatsResult;
  'runs.estimate': T.RunEstimate;
  'runs.start': T.RunStarted;
  'runs.list': T.RunSummary[];
  'runs.get': T.RunDetail;
  'runs.log': { lines: string[] };
  'runs.metrics': T.RunMetrics;
  'runs.pause': T.RunControl;
  'runs.resume': T.RunControl;
  'runs.cancel': T.RunControl;
  'runs.compare': T.CompareResult;
  'sweeps.start': T.SweepStarted;
  'plugins.list': T.PluginSummary[];
  'plugins.get': T.PluginDetail;
  'plugins.tag': { ref: string; tags: string[] };
  'plugins.alias': { plugin: string; alias: string; version: number | null };
  'plugins.notes': { ref: string; notes: string };
  'plugins.export': T.JobStarted;
  'plugins.importPeft': T.PluginVersion;
  'plugins.showInFolder': { path: string; shown: boolean };
  'playground.predict': T.PredictResult;
  'playground.chat': T.ChatResult;
  'system.gpu': T.GpuStatus;
  'system.installCuda': T.JobStarted;
}
export type Result<M extends MethodName> = Results[M];

/** The outcome of each job method, carried by its job.done event. */
export interface JobResults {
  'models.pull': T.ModelPulled;
  'datasets.import': T.DatasetImportResult;
  'plugins.export': T.ExportResult;
  'system.installCuda': T.CudaInstalled;
}
export type JobMethod = keyof JobResults;

/** The whole interface: one handler per method, with validated parameters and its result. */
export type Handlers = { [M in MethodName]: (params: ValidParams<M>) => Promise<Results[M]> };

/** Validates a call: the method must exist and its parameters fit its schema (defaults filled in). */
export function validateCall<M extends MethodName>(
  methodName: string,
  params: unknown,
): { method: M; params: ValidParams<M> } {
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
  return { method: methodName as M, params: r.data as ValidParams<M> };
}

/** Validates a call and runs it on `handlers`: what both transports do with a request. */
export async function dispatch(handlers: Partial<Handlers>, methodName: string, params: unknown): Promise<unknown> {
  const v = validateCall(methodName, params);
  const handler = handlers[v.method] as ((p: unknown) => Promise<unknown>) | undefined;
  if (!handler)
    throw new ContractError({ code: 'unknown-method', message: `"${methodName}" has no handler in this build` });
  return handler(v.params);
}

/** The paths a validated call names (for a transport's folder checks). */
export function pathsOf(methodName: MethodName, params: unknown): string[] {
  const spec = METHODS[methodName] as MethodSpec<z.ZodType>;
  return (spec.paths?.(params) ?? []).filter((p): p is string => typeof p === 'string');
}
