// `delta-studio train` and `resume`: import the data, train a delta in the trainer process, evaluate, save it.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { importDataset, type ColumnMapping, type DatasetVersion, type TaskKind } from '../data/index.js';
import { parseDeltaConfig, type DeltaConfig } from '../delta/index.js';
import { writeFileAtomic } from '../files/atomic.js';
import { safeName } from '../files/paths.js';
import type { TrainConfig, TrainEvent, TrainResult } from '../train/trainer.js';
import { trackRun, writeRunFile, type RunFile } from '../store/track.js';
import { Workspace, type PluginVersionRow } from '../store/workspace.js';
import type { Task } from '../models/types.js';

export type { RunFile } from '../store/track.js';

const MODEL_TASK: Record<TaskKind, Task> = {
  classification: 'classification',
  'pair-classification': 'classification',
  regression: 'regression',
  'causal-lm': 'causal-lm',
  seq2seq: 'seq2seq-lm',
};

function int(v: unknown, name: string, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  return n;
}

function num(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got "${v}"`);
  return n;
}

/** Imports a data file (and optional validation file) into the workspace, by content digest. */
export async function importInto(
  workspace: string,
  file: string,
  task: TaskKind,
  columns: ColumnMapping,
  validation?: string,
  seed = 0,
): Promise<{ dir: string; version: DatasetVersion }> {
  const datasets = join(workspace, 'datasets');
  mkdirSync(datasets, { recursive: true });
  const tmp = join(datasets, `.import-${randomBytes(4).toString('hex')}`);
  const version = await importDataset(file, tmp, {
    task,
    columns,
    split: { validation: validation ? 0 : 0.1, test: 0, seed },
    files: validation ? { validation } : undefined,
  });
  const dir = join(datasets, version.digest.slice(0, 16));
  if (existsSync(dir)) rmSync(tmp, { recursive: true, force: true });
  else renameSync(tmp, dir);
  return { dir, version };
}

function progressPrinter(json: boolean, total: () => number): (e: TrainEvent) => void {
  const tty = process.stderr.isTTY && !json;
  let last = 0;
  return (e) => {
    const out = json ? process.stderr : process.stdout;
    if (e.type === 'start') {
      out.write(
        `device ${e.device}${e.fallbackReason ? ` (CUDA not used: ${e.fallbackReason})` : ''}; ${e.trainable.toLocaleString('en-US')} trainable parameters; ${e.totalSteps} steps${e.resumedFrom ? `; resumed from step ${e.resumedFrom}` : ''}\n`,
      );
    } else if (e.type === 'progress') {
      const pct = Math.min(1, e.step / total());
      const line = `step ${e.step}/${total()} ${'█'.repeat(Math.round(pct * 24)).padEnd(24, '·')} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${Math.round(e.tokensPerSec)} tok/s ETA ${Math.round(e.etaSeconds)}s`;
      if (tty) process.stderr.write(`\r${line}`);
      else if (Date.now() - last > 2000 || e.step === total()) {
        out.write(`${line}\n`);
        last = Date.now();
      }
    } else if (e.type === 'eval') {
      if (tty) process.stderr.write('\n');
      out.write(
        `eval at step ${e.step}: ${Object.entries(e.metrics)
          .map(([k, v]) => `${k} ${v.toFixed(4)}`)
          .join(', ')}\n`,
      );
    }
  };
}

export async function runJob(
  ws: Workspace,
  run: RunFile,
  runDir: string,
  json: boolean,
): Promise<{ result: TrainResult; plugin?: PluginVersionRow }> {
  let total = 0;
  const show = progressPrinter(json, () => total);
  const { job, done } = trackRun(ws, run, (e) => {
    if (e.type === 'start') total = e.totalSteps;
    show(e);
  });
  // Ctrl-C stops after the current step and saves the delta; `resume` continues from the last checkpoint.
  const onInt = (): void => {
    process.stderr.write(
      `\nstopping after this step (resume with: delta-studio resume ${run.id} --workspace ${ws.dir})\n`,
    );
    job.cancel();
  };
  process.once('SIGINT', onInt);
  const r = await done.finally(() => process.off('SIGINT', onInt));
  writeFileAtomic(join(runDir, 'result.json'), new TextEncoder().encode(`${JSON.stringify(r.result, null, 2)}\n`));
  return r;
}

export function report(
  ws: Workspace,
  run: RunFile,
  runDir: string,
  out: { result: TrainResult; plugin?: PluginVersionRow },
  json: boolean,
): number {
  const r = out.result;
  const p = out.plugin;
  const summary = {
    run_id: run.id,
    run_dir: runDir,
    workspace: ws.dir,
    status: r.status,
    steps: r.steps,
    metrics: r.metrics,
    best: r.best ?? null,
    delta: r.deltaFile,
    plugin: p ? { name: p.plugin, version: p.version, file: ws.path(p.file), sha256: p.sha256 } : null,
    tokens_per_sec: r.tokensPerSec,
    device: r.device,
    reason: r.reason ?? null,
  };
  if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    process.stdout.write(
      `run ${run.id} ${r.status} after ${r.steps} steps; ${Object.entries(r.metrics)
        .map(([k, v]) => `${k} ${v.toFixed(4)}`)
        .join(', ')}\n`,
    );
    if (p) process.stdout.write(`plugin ${p.plugin} v${p.version} saved to ${ws.path(p.file)}\n`);
    else if (r.status === 'cancelled')
      process.stdout.write(`resume with: delta-studio resume ${run.id} --workspace ${ws.dir}\n`);
  }
  return r.status === 'diverged' ? 1 : 0;
}

export async function trainCommand(v: Record<string, string | boolean | undefined>): Promise<number> {
  if (typeof v.model !== 'string') throw new Error('train needs --model <model-dir>');
  if (typeof v.data !== 'string') throw new Error('train needs --data <file> (csv, tsv, jsonl or json)');
  const task = (v.task ?? 'classification') as TaskKind;
  if (!(task in MODEL_TASK))
    throw new Error(`--task must be one of ${Object.keys(MODEL_TASK).join(', ')}, got "${task}"`);
  const json = v.json === true;
  const workspace = resolve(typeof v.workspace === 'string' ? v.workspace : 'delta-studio-workspace');
  const columns: ColumnMapping = {};
  for (const k of ['text', 'text_pair', 'label', 'prompt', 'completion', 'source', 'target'] as const) {
    const flag = v[k.replace('_', '-')];
    if (typeof flag === 'string') columns[k] = flag;
  }
  let deltas: DeltaConfig[];
  if (typeof v.delta === 'string') deltas = parseDeltaConfig(JSON.parse(readFileSync(v.delta, 'utf8')), v.delta);
  else {
    const method = typeof v.method === 'string' ? v.method : 'lora';
    const cfg: Record<string, unknown> = { method };
    if (v.r !== undefined) cfg.r = int(v.r, 'r', 8);
    if (v.alpha !== undefined) cfg.alpha = num(v.alpha, 'alpha', 8);
    deltas = parseDeltaConfig(cfg);
  }
  const seed = int(v.seed, 'seed', 0, 0);
  const ws = Workspace.init(workspace);
  const model = ws.addModel(v.model, { copy: v['copy-model'] === true });
  const modelDir = ws.modelPath(model);
  const { dir, version } = await importInto(
    workspace,
    v.data,
    task,
    columns,
    typeof v.validation === 'string' ? v.validation : undefined,
    seed,
  );
  const datasetName =
    typeof v['dataset-name'] === 'string' ? v['dataset-name'] : safeName(basename(v.data, extname(v.data)));
  const { versionId } = ws.addDatasetVersion(datasetName, relative(workspace, dir), version);
  const id = Workspace.newRunId();
  const runDir = join(workspace, 'runs', id);
  mkdirSync(runDir, { recursive: true });
  const config: TrainConfig = {
    model: modelDir,
    task: MODEL_TASK[task],
    labels: version.labels,
    deltas,
    epochs: int(v.epochs, 'epochs', 3),
    maxSteps: v['max-steps'] === undefined ? undefined : int(v['max-steps'], 'max-steps', 0),
    batchSize: int(v['batch-size'], 'batch-size', 16),
    accumulation: int(v.accumulation, 'accumulation', 1),
    lr: num(v.lr, 'lr', 1e-3),
    schedule: (v.schedule as TrainConfig['schedule']) ?? 'linear',
    warmup: num(v.warmup, 'warmup', 0.06),
    maxLength: int(v['max-length'], 'max-length', 128),
    seed,
    device: (v.device as TrainConfig['device']) ?? 'auto',
    precision: v.precision === 'fp16' || v.precision === 'float16' ? 'float16' : 'float32',
    evalEvery: v['eval-every'] === undefined ? undefined : int(v['eval-every'], 'eval-every', 1),
    checkpointEvery: int(v['checkpoint-every'], 'checkpoint-every', 50),
    runDir,
  };
  if (!['linear', 'cosine', 'constant'].includes(config.schedule!))
    throw new Error(`--schedule must be linear, cosine or constant, got "${config.schedule}"`);
  if (v.precision !== undefined && !['fp16', 'float16', 'fp32', 'float32'].includes(String(v.precision)))
    throw new Error(`--precision must be fp32 or fp16, got "${v.precision}"`);
  if (!['auto', 'cpu', 'cuda'].includes(config.device!))
    throw new Error(`--device must be auto, cpu or cuda, got "${config.device}"`);
  const methodName = deltas.map((d) => d.method).join('+');
  const pluginName = typeof v.plugin === 'string' ? v.plugin : safeName(`${datasetName}-${methodName}`);
  if (pluginName !== safeName(pluginName))
    throw new Error(
      `--plugin "${pluginName}" must hold only letters, digits, ".", "-" and "_" (for example "${safeName(pluginName)}")`,
    );
  const run: RunFile = { id, dataset: { dir, digest: version.digest, task }, config, plugin: pluginName };
  writeRunFile(runDir, run);
  ws.createRun({
    id,
    name: typeof v.name === 'string' ? v.name : undefined,
    config,
    method: methodName,
    modelId: model.id,
    datasetVersionId: versionId,
    dir: relative(workspace, runDir),
    totalParams: model.params ?? undefined,
  });
  (json ? process.stderr : process.stdout).write(
    `dataset ${datasetName} ${version.digest.slice(0, 16)}: ${version.rows.train} train, ${version.rows.validation} validation rows${version.labels ? `; labels ${version.labels.join(', ')}` : ''}\nrun ${id} in ${runDir}\n`,
  );
  try {
    return report(ws, run, runDir, await runJob(ws, run, runDir, json), json);
  } finally {
    ws.close();
  }
}

/** The workspace and run a `resume` argument names: a run id (with --workspace) or a run folder (runs/<id>). */
export function findRun(arg: string, workspace: string | undefined): { ws: Workspace; run: RunFile; runDir: string } {
  const asDir = resolve(arg);
  const fromDir = existsSync(join(asDir, 'run.json')) && basename(dirname(asDir)) === 'runs';
  const ws = Workspace.open(workspace ?? (fromDir ? dirname(dirname(asDir)) : 'delta-studio-workspace'));
  const row = ws.getRun(fromDir ? basename(asDir) : arg);
  const runDir = ws.path(row.dir);
  const file = join(runDir, 'run.json');
  if (!existsSync(file)) throw new Error(`${runDir}: no run.json: the run's folder is gone, it cannot be resumed`);
  return { ws, run: JSON.parse(readFileSync(file, 'utf8')) as RunFile, runDir };
}

export async function resumeCommand(
  arg: string | undefined,
  v: Record<string, string | boolean | undefined>,
): Promise<number> {
  if (!arg) throw new Error('resume needs the run: delta-studio resume <run-id> [--workspace DIR] (or the run folder)');
  const { ws, run, runDir } = findRun(arg, typeof v.workspace === 'string' ? v.workspace : undefined);
  try {
    const row = ws.getRun(run.id);
    if (row.status === 'finished')
      throw new Error(
        `run ${run.id} has already finished (plugin ${run.plugin ?? ''}); start a new run to train again`,
      );
    return report(ws, run, runDir, await runJob(ws, run, runDir, v.json === true), v.json === true);
  } finally {
    ws.close();
  }
}
