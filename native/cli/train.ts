// `delta-studio train` and `resume`: flags into the contract's run configuration, then the application imports the
// model and data, records the run, trains it in its own process with progress, and registers its plugin.
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { COLUMN_ROLES, runConfig, TASKS, type ColumnMapping, type TaskName } from '../contract/index.js';
import { Application, RUN_FILE, type RunOutcome } from '../app/index.js';
import { loadWithDeltas, METHODS, parseDeltaConfig, type DeltaConfig } from '../delta/index.js';
import { headTask } from '../app/tasks.js';
import { readModelFolder } from '../models/folder.js';
import { cudaStatus } from '../runtime/providers.js';
import { safeName } from '../files/paths.js';
import { runSettingsFromFlags, type FlagValues } from './flags.js';
import { chatTemplateFlag } from './predict.js';
import { printProgress, type Values } from './output.js';
import { workspaceDir } from './workspace-dir.js';

/**
 * `--set key=value` (repeatable): a setting of the method, in its own type — numbers, true/false, and lists as
 * comma-separated names (target_modules=q_proj,v_proj); anything else is text. The method checks the keys.
 */
export function methodSettings(sets: string[], method: string): Record<string, unknown> {
  const keys = METHODS.get(method)?.keys ?? {};
  const out: Record<string, unknown> = {};
  for (const set of sets) {
    const eq = set.indexOf('=');
    if (eq <= 0) throw new Error(`--set ${set}: write key=value (for example --set bottleneck_dim=32)`);
    const key = set.slice(0, eq).trim();
    const raw = set.slice(eq + 1).trim();
    const type = keys[key]?.type;
    if (type === 'strings' || (type === 'strings-or-regex' && raw.includes(',')))
      out[key] = raw
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
    else if (type === 'boolean' && (raw === 'true' || raw === 'false')) out[key] = raw === 'true';
    else if ((type === 'number' || type === 'integer') && raw !== '' && Number.isFinite(Number(raw)))
      out[key] = Number(raw);
    else out[key] = raw;
  }
  return out;
}

/** Every method's settings, for `train --help`: name, default and what it does. */
export function methodSettingHelp(): string {
  return [...METHODS.values()]
    .map((m) => {
      const keys = Object.entries(m.keys).filter(
        ([k]) => !['modified_modules', 'target_modules', 'exclude_modules'].includes(k),
      );
      const list = keys.map(([k, c]) => `${k}${c.default !== undefined ? `=${JSON.stringify(c.default)}` : ''}`);
      return `  ${m.name.padEnd(18)} ${list.join(' ') || '(no settings)'}`;
    })
    .join('\n');
}

/** The deltas: a JSON file (--delta), or one method with its --set settings (and LoRA's --r and --alpha). */
function deltasFromFlags(v: FlagValues): DeltaConfig[] {
  if (typeof v.delta === 'string') {
    if (v.set !== undefined || v.method !== undefined)
      throw new Error('--delta gives the whole delta config: leave out --method and --set (or put them in the file)');
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(v.delta, 'utf8'));
    } catch (e) {
      throw new Error(`--delta ${v.delta}: ${(e as Error).message}`, { cause: e });
    }
    return parseDeltaConfig(raw, v.delta);
  }
  const method = typeof v.method === 'string' ? v.method : 'lora';
  const sets = Array.isArray(v.set) ? (v.set as string[]) : typeof v.set === 'string' ? [v.set] : [];
  const cfg: Record<string, unknown> = { method, ...methodSettings(sets, method) };
  for (const k of ['r', 'alpha'] as const) {
    if (v[k] === undefined) continue;
    const n = Number(v[k]);
    if (!Number.isFinite(n) || n < 0 || (k === 'r' && !Number.isInteger(n)))
      throw new Error(`--${k} must be a ${k === 'r' ? 'whole' : 'non-negative'} number, got "${String(v[k])}"`);
    cfg[k] = n;
  }
  return parseDeltaConfig(cfg);
}

/** Waits for the run, stopping it after its step on Ctrl-C (resumable), and prints how it ended. */
async function follow(app: Application, runId: string, json: boolean): Promise<RunOutcome & { seconds: number }> {
  const t0 = performance.now();
  const stopPrinting = printProgress(app, runId, json);
  const ws = app.workspaceOrFail().dir;
  const onInt = (): void => {
    process.stderr.write(`\nstopping after this step (resume with: delta-studio resume ${runId} --workspace ${ws})\n`);
    app.runs.cancel(runId);
  };
  process.once('SIGINT', onInt);
  try {
    return { ...(await app.queue.outcome(runId)), seconds: (performance.now() - t0) / 1000 };
  } finally {
    process.off('SIGINT', onInt);
    stopPrinting();
  }
}

function report(app: Application, o: RunOutcome & { seconds: number }, json: boolean): number {
  if (!o.result) throw new Error(o.reason ?? `run ${o.runId} ended as ${o.status}`);
  const ws = app.workspaceOrFail();
  const r = o.result;
  const p = o.plugin;
  const row = ws.getRun(o.runId);
  const summary = {
    runId: o.runId,
    runDir: ws.path(row.dir),
    workspace: ws.dir,
    status: r.status,
    steps: r.steps,
    trainableParams: row.trainable_params,
    /** Wall time of this command's part of the run (start-up and evaluation included). */
    seconds: o.seconds,
    metrics: r.metrics,
    best: r.best ?? null,
    delta: r.deltaFile,
    plugin: p ? { name: p.plugin, version: p.version, file: ws.path(p.file), sha256: p.sha256 } : null,
    tokensPerSec: r.tokensPerSec,
    device: r.device,
    reason: r.reason ?? null,
  };
  if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    const metrics = Object.entries(r.metrics).map(([k, x]) => `${k} ${x.toFixed(4)}`);
    const trainable =
      row.trainable_params === null ? '' : `, ${row.trainable_params.toLocaleString('en-US')} trainable`;
    process.stdout.write(
      `run ${o.runId} ${r.status} after ${r.steps} steps in ${o.seconds.toFixed(1)} s${trainable}${metrics.length ? `; ${metrics.join(', ')}` : ''}\n`,
    );
    if (p) process.stdout.write(`plugin ${p.plugin} v${p.version} saved to ${ws.path(p.file)}\n`);
    else if (r.status === 'cancelled')
      process.stdout.write(`resume with: delta-studio resume ${o.runId} --workspace ${ws.dir}\n`);
  }
  return r.status === 'diverged' ? 1 : 0;
}

export async function trainCommand(v: FlagValues): Promise<number> {
  // Everything the flags say is checked before anything is recorded.
  if (typeof v.model !== 'string') throw new Error('train needs --model <model-dir>');
  if (typeof v.data !== 'string') throw new Error('train needs --data <file> (csv, tsv, jsonl or json)');
  const task = (v.task ?? 'classification') as TaskName;
  if (!TASKS.includes(task)) throw new Error(`--task must be one of ${TASKS.join(', ')}, got "${task}"`);
  const json = v.json === true;
  const columns: ColumnMapping = {};
  for (const k of COLUMN_ROLES) {
    const flag = v[k.replace('_', '-')];
    if (typeof flag === 'string') columns[k] = flag;
  }
  const deltas = deltasFromFlags(v);
  const validationFraction = v['validation-fraction'] === undefined ? 0.1 : Number(v['validation-fraction']);
  if (!(validationFraction >= 0 && validationFraction <= 0.9))
    throw new Error(`--validation-fraction must be a number from 0 to 0.9, got "${String(v['validation-fraction'])}"`);
  if (typeof v.validation === 'string' && v['validation-fraction'] !== undefined)
    throw new Error('--validation gives the validation rows: leave out --validation-fraction');
  const settings = runSettingsFromFlags(v as FlagValues);
  const datasetName =
    typeof v['dataset-name'] === 'string' ? v['dataset-name'] : safeName(basename(v.data, extname(v.data)));
  const plugin =
    typeof v.plugin === 'string' ? v.plugin : safeName(`${datasetName}-${deltas.map((d) => d.method).join('+')}`);
  if (plugin !== safeName(plugin))
    throw new Error(
      `--plugin "${plugin}" must hold only letters, digits, ".", "-" and "_" (for example "${safeName(plugin)}")`,
    );

  // What can be checked without a workspace is checked before one is made: the model folder, the data files, the
  // modules the deltas address, CUDA when asked for.
  readModelFolder(v.model);
  for (const [flag, file] of [
    ['data', v.data],
    ['validation', v.validation],
    ['test', v.test],
  ] as const)
    if (typeof file === 'string' && !statSync(file, { throwIfNoEntry: false })?.isFile())
      throw new Error(`--${flag} ${file}: no such file`);
  try {
    loadWithDeltas(v.model, { task: headTask(task) }, deltas);
  } catch (e) {
    throw new Error(`${v.model}: ${(e as Error).message}`, { cause: e });
  }
  if (settings.device === 'cuda') {
    const cuda = await cudaStatus();
    if (!cuda.usable) throw new Error(`--device cuda: CUDA cannot be used here: ${cuda.reason}`);
  }

  const dir = workspaceDir(v);
  const created = !existsSync(dir);
  const app = new Application();
  let recorded = false;
  try {
    await app.open(dir, true);
    const model = app.models.import({ path: v.model, copy: v['copy-model'] === true });
    const ds = await app.datasets.import({
      path: v.data,
      name: datasetName,
      task,
      columns,
      validationPath: typeof v.validation === 'string' ? v.validation : undefined,
      validationFraction,
      seed: settings.seed ?? 0,
      testPath: typeof v.test === 'string' ? v.test : undefined,
      headerless: typeof v.columns === 'string' ? v.columns.split(',').map((c) => c.trim()) : undefined,
    });
    const chatTemplate = chatTemplateFlag(v as Values);
    const cfg = runConfig.parse({
      ...settings,
      ...(chatTemplate !== undefined ? { chatTemplate } : {}),
      modelId: model.id,
      datasetVersionId: ds.versionId,
      deltas,
      plugin,
      name: typeof v.name === 'string' ? v.name : undefined,
    });
    const { runId } = await app.runs.start(cfg);
    recorded = true;
    const runDir = app.runs.file(runId).dir;
    (json ? process.stderr : process.stdout).write(
      `dataset ${datasetName} ${ds.digest.slice(0, 16)}: ${ds.rows.train} train, ${ds.rows.validation} validation rows${ds.labels ? `; labels ${ds.labels.join(', ')}` : ''}\nrun ${runId} in ${runDir}\n`,
    );
    return report(app, await follow(app, runId, json), json);
  } finally {
    await app.close();
    // A workspace this command made for a run that was never recorded holds nothing worth keeping.
    if (created && !recorded) rmSync(dir, { recursive: true, force: true });
  }
}

/** The workspace and run a `resume` argument names: a run id (with --workspace) or a run folder (runs/<id>). */
function findRun(arg: string, v: Values): { workspace: string; runId: string } {
  const asDir = resolve(arg);
  if (existsSync(join(asDir, RUN_FILE)) && basename(dirname(asDir)) === 'runs')
    return {
      workspace: typeof v.workspace === 'string' ? resolve(v.workspace) : dirname(dirname(asDir)),
      runId: basename(asDir),
    };
  return { workspace: workspaceDir(v), runId: arg };
}

export async function resumeCommand(arg: string | undefined, v: Values): Promise<number> {
  if (!arg) throw new Error('resume needs the run: delta-studio resume <run-id> [--workspace DIR] (or the run folder)');
  const { workspace, runId } = findRun(arg, v);
  const app = new Application();
  try {
    await app.open(workspace, false);
    const { runId: id } = app.runs.resume(runId);
    return report(app, await follow(app, id, v.json === true), v.json === true);
  } finally {
    await app.close();
  }
}
