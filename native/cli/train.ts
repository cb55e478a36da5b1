// `delta-studio train` and `resume`: flags into the contract's run configuration, then the application imports the
// model and data, records the run, trains it in its own process with progress, and registers its plugin.
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { COLUMN_ROLES, runConfig, TASKS, type ColumnMapping, type TaskName } from '../contract/index.js';
import { Application, RUN_FILE, type RunOutcome } from '../app/index.js';
import { parseDeltaConfig, type DeltaConfig } from '../delta/index.js';
import { safeName } from '../files/paths.js';
import { runSettingsFromFlags, type FlagValues } from './flags.js';
import { printProgress, type Values } from './output.js';
import { workspaceDir } from './workspace-dir.js';

/** The deltas: a JSON file (--delta), or one method with LoRA's --r and --alpha. */
function deltasFromFlags(v: Values): DeltaConfig[] {
  if (typeof v.delta === 'string') {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(v.delta, 'utf8'));
    } catch (e) {
      throw new Error(`--delta ${v.delta}: ${(e as Error).message}`, { cause: e });
    }
    return parseDeltaConfig(raw, v.delta);
  }
  const cfg: Record<string, unknown> = { method: typeof v.method === 'string' ? v.method : 'lora' };
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
async function follow(app: Application, runId: string, json: boolean): Promise<RunOutcome> {
  const stopPrinting = printProgress(app, runId, json);
  const ws = app.workspaceOrFail().dir;
  const onInt = (): void => {
    process.stderr.write(`\nstopping after this step (resume with: delta-studio resume ${runId} --workspace ${ws})\n`);
    app.runs.cancel(runId);
  };
  process.once('SIGINT', onInt);
  try {
    return await app.queue.outcome(runId);
  } finally {
    process.off('SIGINT', onInt);
    stopPrinting();
  }
}

function report(app: Application, o: RunOutcome, json: boolean): number {
  if (!o.result) throw new Error(o.reason ?? `run ${o.runId} ended as ${o.status}`);
  const ws = app.workspaceOrFail();
  const r = o.result;
  const p = o.plugin;
  const runDir = ws.path(ws.getRun(o.runId).dir);
  const summary = {
    runId: o.runId,
    runDir,
    workspace: ws.dir,
    status: r.status,
    steps: r.steps,
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
    process.stdout.write(
      `run ${o.runId} ${r.status} after ${r.steps} steps${metrics.length ? `; ${metrics.join(', ')}` : ''}\n`,
    );
    if (p) process.stdout.write(`plugin ${p.plugin} v${p.version} saved to ${ws.path(p.file)}\n`);
    else if (r.status === 'cancelled')
      process.stdout.write(`resume with: delta-studio resume ${o.runId} --workspace ${ws.dir}\n`);
  }
  return r.status === 'diverged' ? 1 : 0;
}

export async function trainCommand(v: Values): Promise<number> {
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
  const settings = runSettingsFromFlags(v as FlagValues);
  const datasetName =
    typeof v['dataset-name'] === 'string' ? v['dataset-name'] : safeName(basename(v.data, extname(v.data)));
  const plugin =
    typeof v.plugin === 'string' ? v.plugin : safeName(`${datasetName}-${deltas.map((d) => d.method).join('+')}`);
  if (plugin !== safeName(plugin))
    throw new Error(
      `--plugin "${plugin}" must hold only letters, digits, ".", "-" and "_" (for example "${safeName(plugin)}")`,
    );

  const app = new Application();
  try {
    await app.open(workspaceDir(v), true);
    const model = app.models.import({ path: v.model, copy: v['copy-model'] === true });
    const ds = await app.datasets.import({
      path: v.data,
      name: datasetName,
      task,
      columns,
      validationPath: typeof v.validation === 'string' ? v.validation : undefined,
      validationFraction: 0.1,
      seed: settings.seed ?? 0,
    });
    const cfg = runConfig.parse({
      ...settings,
      modelId: model.id,
      datasetVersionId: ds.versionId,
      deltas,
      plugin,
      name: typeof v.name === 'string' ? v.name : undefined,
    });
    const { runId } = app.runs.start(cfg);
    const runDir = app.runs.file(runId).dir;
    (json ? process.stderr : process.stdout).write(
      `dataset ${datasetName} ${ds.digest.slice(0, 16)}: ${ds.rows.train} train, ${ds.rows.validation} validation rows${ds.labels ? `; labels ${ds.labels.join(', ')}` : ''}\nrun ${runId} in ${runDir}\n`,
    );
    return report(app, await follow(app, runId, json), json);
  } finally {
    await app.close();
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
