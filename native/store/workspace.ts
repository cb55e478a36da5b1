// A workspace: a folder the user picks, holding one SQLite database (the index) and the files it points at (the
// payload): datasets/, runs/, plugins/, exports/, models/ (for models copied in). Files are written atomically
// before the row that names them is committed, so a crash leaves at worst an unreferenced file (an orphan that
// `workspace check` finds and moves to lost+found/), never a row pointing at a half-written file.
import {
  accessSync,
  constants,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { crashPoint } from '../files/crash.js';
import { asDiskFull } from '../files/disk.js';
import { pidAlive, tempName } from '../files/temp.js';
import { insideJoin, safeName } from '../files/paths.js';
import type { HostTensor } from '../onnx/graph.js';
import { readModelFolder } from '../models/folder.js';
import { architectureOf } from '../models/index.js';
import type { DatasetVersion } from '../data/types.js';
import {
  modelFingerprint,
  PLUGIN_EXTENSION,
  readPlugin,
  writePlugin,
  type Plugin,
  type PluginMeta,
} from '../plugins/format.js';
import { openDatabase, WorkspaceError, type DB } from './db.js';
import { SCHEMA_VERSION } from './migrations/index.js';
import { RUN_STATUSES, type RunStatus } from '../contract/vocabulary.js';
import type { MetricPoint } from '../contract/types.js';

export { RUN_STATUSES, type MetricPoint, type RunStatus };

export { WorkspaceError } from './db.js';

export const DB_FILE = 'workspace.db';
export const FOLDERS = ['datasets', 'runs', 'plugins', 'exports', 'models', 'lost+found'] as const;

export interface ModelRow {
  id: number;
  name: string;
  path: string;
  copied: number;
  model_type: string;
  architecture: string | null;
  fingerprint: string;
  params: number | null;
  added_at: string;
}
export interface RunRow {
  id: string;
  name: string | null;
  status: RunStatus;
  config: string;
  method: string;
  trainable_params: number | null;
  total_params: number | null;
  device: string | null;
  model_id: number | null;
  dataset_version_id: number | null;
  dir: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  steps: number;
  total_steps: number | null;
  train_seconds: number | null;
  tokens_per_sec: number | null;
  reason: string | null;
  pid: number | null;
  host: string | null;
}
export interface PluginVersionRow {
  id: number;
  plugin_id: number;
  plugin: string;
  version: number;
  file: string;
  sha256: string;
  size: number;
  method: string;
  methods: string;
  task: string;
  labels: string | null;
  base_fingerprint: string;
  model_id: number | null;
  run_id: string | null;
  source: string;
  metrics: string;
  trainable_params: number;
  notes: string;
  created_at: string;
}

const now = (): string => new Date().toISOString();

/** Metrics where higher is better (the `best` alias follows the first of these a version has, else the lowest loss). */
const HIGHER = ['accuracy', 'macro_f1', 'mcc', 'pearson', 'spearman', 'exact_match'];
const LOWER = ['loss', 'mse', 'perplexity'];

/** Runs this process is driving (so that reopening the workspace in the same process does not interrupt them). */
export const ACTIVE_RUNS = new Set<string>();

function checkWritable(dir: string): void {
  try {
    accessSync(dir, constants.W_OK);
    const probe = join(dir, tempName('write-probe'));
    mkdirSync(probe);
    rmSync(probe, { recursive: true });
  } catch (e) {
    const full = asDiskFull(e, dir);
    if (full !== e) throw full;
    const code = (e as NodeJS.ErrnoException).code;
    throw new WorkspaceError(
      'read-only',
      `${dir}: the workspace folder cannot be written (${code ?? (e as Error).message}${code === 'EROFS' ? ': read-only file system' : ''}); choose a writable folder or copy the workspace to one`,
      { cause: e },
    );
  }
}

export class Workspace {
  /** Run ids found `running` by a process that no longer exists, marked `interrupted` when this workspace opened. */
  readonly recovered: string[] = [];
  private constructor(
    readonly dir: string,
    readonly db: DB,
    readonly migratedFrom?: number,
    readonly backup?: string,
  ) {}

  /** Creates a workspace in `dir` (made if missing; an existing workspace is opened as it is). */
  static init(dir: string): Workspace {
    const root = resolve(dir);
    if (existsSync(root) && !statSync(root).isDirectory())
      throw new WorkspaceError('bad-input', `${root} is a file, not a folder`);
    try {
      mkdirSync(root, { recursive: true });
    } catch (e) {
      // A recursive mkdir on a read-only disk says ENOENT; the nearest existing folder says why.
      let up = dirname(root);
      while (!existsSync(up) && dirname(up) !== up) up = dirname(up);
      let code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      try {
        accessSync(up, constants.W_OK);
      } catch (w) {
        code = (w as NodeJS.ErrnoException).code ?? code;
      }
      throw new WorkspaceError(
        'read-only',
        `${root}: cannot create the workspace folder (${code}${code === 'EROFS' ? ': read-only file system' : ''})`,
        { cause: e },
      );
    }
    checkWritable(root);
    return Workspace.openAt(root);
  }

  /** Opens an existing workspace: migrates an older one (after a backup), refuses a newer one, recovers crashed runs. */
  static open(dir: string, opts: { recover?: boolean } = {}): Workspace {
    const root = resolve(dir);
    if (!existsSync(join(root, DB_FILE))) {
      throw new WorkspaceError(
        existsSync(root) ? 'not-a-workspace' : 'not-found',
        `${root}: not a Delta Studio workspace (no ${DB_FILE}); create one with 'delta-studio workspace init ${dir}'`,
      );
    }
    checkWritable(root);
    return Workspace.openAt(root, opts.recover ?? true);
  }

  private static openAt(root: string, recover = true): Workspace {
    for (const f of FOLDERS) mkdirSync(join(root, f), { recursive: true });
    const { db, migratedFrom, backup } = openDatabase(join(root, DB_FILE));
    const ws = new Workspace(root, db, migratedFrom, backup);
    // A helper thread of the process that runs the runs (an export worker) must not judge them: it cannot see
    // which runs its process is driving.
    if (recover) ws.recoverInterrupted();
    return ws;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  static get latestSchema(): number {
    return SCHEMA_VERSION;
  }

  /** An absolute path inside the workspace for a stored relative one, refusing any that leave it. */
  path(rel: string): string {
    return insideJoin(this.dir, rel, 'workspace path');
  }

  /** One write to the workspace; a full disk (SQLite's or a file's) fails as one DiskFullError naming the workspace. */
  private write<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw asDiskFull(e, this.dir);
    }
  }

  private tx<T>(fn: () => T): T {
    return this.write(() => this.db.transaction(fn).immediate());
  }

  /** Runs left running or paused by a process that is gone (on this machine) become `interrupted`, resumable. */
  recoverInterrupted(): string[] {
    const host = hostname();
    const rows = this.db.prepare(`SELECT id, pid, host FROM runs WHERE status IN ('running', 'paused')`).all() as {
      id: string;
      pid: number | null;
      host: string | null;
    }[];
    // Our own pid on a run this process is not running: the pid was reused after the crash of the one that was.
    const dead = rows.filter(
      (r) =>
        r.pid === null || (r.host === host && (!pidAlive(r.pid) || (r.pid === process.pid && !ACTIVE_RUNS.has(r.id)))),
    );
    if (dead.length) {
      const mark = this.db.prepare(
        `UPDATE runs SET status = 'interrupted', reason = ?, pid = NULL WHERE id = ? AND status IN ('running', 'paused')`,
      );
      this.tx(() => {
        for (const r of dead)
          mark.run('the process running it stopped without finishing (crash, kill or power loss); resume it', r.id);
      });
      this.recovered.push(...dead.map((r) => r.id));
    }
    return dead.map((r) => r.id);
  }

  // ——— models ———

  /** Records a model folder, referenced in place, or copied into models/ when `copy` (the copy is atomic). */
  addModel(path: string, opts: { copy?: boolean; name?: string } = {}): ModelRow {
    const src = resolve(path);
    const folder = readModelFolder(src);
    const arch = architectureOf(folder);
    const fingerprint = modelFingerprint(folder);
    const params = [...folder.weights.values()].reduce((a, r) => a + r.shape.reduce((x, y) => x * y, 1), 0);
    const name = opts.name ?? basename(src);
    let stored = src;
    if (opts.copy) {
      const rel = join('models', `${safeName(name)}-${fingerprint.slice(0, 12)}`);
      const dest = this.path(rel);
      if (!existsSync(dest)) {
        const tmp = this.path(join('models', tempName('copy')));
        this.write(() => {
          try {
            cpSync(src, tmp, { recursive: true, dereference: true });
            renameSync(tmp, dest);
          } catch (e) {
            rmSync(tmp, { recursive: true, force: true }); // a half copy is of no use to anyone
            throw e;
          }
        });
      }
      stored = rel;
    }
    const existing = this.db
      .prepare('SELECT * FROM models WHERE fingerprint = ? AND path = ?')
      .get(fingerprint, stored) as ModelRow | undefined;
    if (existing) return existing;
    const architecture = Array.isArray(folder.config.architectures) ? String(folder.config.architectures[0]) : null;
    void arch;
    const info = this.write(() =>
      this.db
        .prepare(
          'INSERT INTO models (name, path, copied, model_type, architecture, fingerprint, params, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          name,
          stored,
          opts.copy ? 1 : 0,
          String(folder.config.model_type),
          architecture,
          fingerprint,
          params,
          now(),
        ),
    );
    return this.db.prepare('SELECT * FROM models WHERE id = ?').get(info.lastInsertRowid) as ModelRow;
  }

  modelPath(m: ModelRow): string {
    return m.copied ? this.path(m.path) : m.path;
  }

  listModels(): ModelRow[] {
    return this.db.prepare('SELECT * FROM models ORDER BY id').all() as ModelRow[];
  }

  getModel(id: number): ModelRow {
    const m = this.db.prepare('SELECT * FROM models WHERE id = ?').get(id) as ModelRow | undefined;
    if (!m) throw new WorkspaceError('not-found', `no model with id ${id} in ${this.dir}`);
    return m;
  }

  // ——— datasets ———

  /** Records an imported dataset version (its folder under datasets/, written before this call). */
  addDatasetVersion(name: string, dir: string, v: DatasetVersion): { datasetId: number; versionId: number } {
    const rel = relative(this.dir, resolve(this.dir, dir));
    this.path(rel);
    return this.tx(() => {
      this.db
        .prepare('INSERT INTO datasets (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING')
        .run(name, now());
      const { id: datasetId } = this.db.prepare('SELECT id FROM datasets WHERE name = ?').get(name) as { id: number };
      const hit = this.db
        .prepare('SELECT id FROM dataset_versions WHERE dataset_id = ? AND digest = ?')
        .get(datasetId, v.digest) as { id: number } | undefined;
      if (hit) return { datasetId, versionId: hit.id };
      const info = this.db
        .prepare(
          'INSERT INTO dataset_versions (dataset_id, digest, dir, source, task, schema, stats, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          datasetId,
          v.digest,
          rel,
          v.source.files.join(', '),
          v.task,
          JSON.stringify({ columns: v.columns, labels: v.labels ?? null, split: v.split }),
          JSON.stringify({ rows: v.rows, ...v.stats }),
          now(),
        );
      return { datasetId, versionId: Number(info.lastInsertRowid) };
    });
  }

  listDatasets(): {
    id: number;
    name: string;
    versions: {
      id: number;
      digest: string;
      dir: string;
      task: string;
      source: string;
      stats: unknown;
      created_at: string;
    }[];
  }[] {
    const ds = this.db.prepare('SELECT id, name FROM datasets ORDER BY id').all() as { id: number; name: string }[];
    const vs = this.db.prepare(
      'SELECT id, digest, dir, task, source, stats, created_at FROM dataset_versions WHERE dataset_id = ? ORDER BY id',
    );
    return ds.map((d) => ({
      ...d,
      versions: (
        vs.all(d.id) as {
          id: number;
          digest: string;
          dir: string;
          task: string;
          source: string;
          stats: string;
          created_at: string;
        }[]
      ).map((v) => ({ ...v, stats: JSON.parse(v.stats) as unknown })),
    }));
  }

  datasetVersion(id: number): { id: number; dataset: string; digest: string; dir: string; task: string } {
    const v = this.db
      .prepare(
        'SELECT v.id, d.name AS dataset, v.digest, v.dir, v.task FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id WHERE v.id = ?',
      )
      .get(id) as { id: number; dataset: string; digest: string; dir: string; task: string } | undefined;
    if (!v) throw new WorkspaceError('not-found', `no dataset version ${id} in ${this.dir}`);
    return v;
  }

  /**
   * The split rule recorded with a dataset version (fractions and split files, as that import asked): two imports of
   * the same rows share a folder, not what was asked.
   */
  datasetVersionSplit(id: number): DatasetVersion['split'] | null {
    const row = this.db.prepare('SELECT schema FROM dataset_versions WHERE id = ?').get(id) as
      { schema: string } | undefined;
    if (!row) throw new WorkspaceError('not-found', `no dataset version ${id} in ${this.dir}`);
    return (JSON.parse(row.schema) as { split?: DatasetVersion['split'] }).split ?? null;
  }

  // ——— runs ———

  createRun(r: {
    id: string;
    name?: string;
    config: unknown;
    method: string;
    modelId?: number;
    datasetVersionId?: number;
    dir: string;
    totalParams?: number;
    trainableParams?: number;
  }): RunRow {
    const rel = relative(this.dir, resolve(this.dir, r.dir));
    this.path(rel);
    this.tx(() => {
      this.db
        .prepare(
          `INSERT INTO runs (id, name, status, config, method, trainable_params, total_params, model_id, dataset_version_id, dir, created_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          r.id,
          r.name ?? null,
          JSON.stringify(r.config),
          r.method,
          r.trainableParams ?? null,
          r.totalParams ?? null,
          r.modelId ?? null,
          r.datasetVersionId ?? null,
          rel,
          now(),
        );
      crashPoint(`run ${r.id} inserted, not committed`);
    });
    return this.getRun(r.id);
  }

  /** Marks a run running in this process (or `pid`): a crash is then told apart from a live run by the pid. */
  startRun(
    id: string,
    info: { device?: string; totalSteps?: number; trainableParams?: number; pid?: number } = {},
  ): void {
    const run = this.getRun(id);
    if (
      run.status === 'running' &&
      run.pid !== null &&
      run.host === hostname() &&
      pidAlive(run.pid) &&
      run.pid !== process.pid
    ) {
      throw new WorkspaceError('conflict', `run ${id} is already running (process ${run.pid})`);
    }
    if (run.status === 'finished')
      throw new WorkspaceError('conflict', `run ${id} has finished; start a new run instead`);
    this.write(() =>
      this.db
        .prepare(
          `UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), device = COALESCE(?, device), total_steps = COALESCE(?, total_steps),
      trainable_params = COALESCE(?, trainable_params), pid = ?, host = ?, reason = NULL WHERE id = ?`,
        )
        .run(
          now(),
          info.device ?? null,
          info.totalSteps ?? null,
          info.trainableParams ?? null,
          info.pid ?? process.pid,
          hostname(),
          id,
        ),
    );
  }

  setRunStatus(id: string, status: RunStatus, reason?: string): void {
    if (!RUN_STATUSES.includes(status))
      throw new WorkspaceError('bad-input', `unknown run status "${status}" (expected ${RUN_STATUSES.join(', ')})`);
    const done = !['queued', 'running', 'paused'].includes(status);
    const info = this.write(() =>
      this.db
        .prepare(`UPDATE runs SET status = ?, reason = ?, pid = CASE WHEN ? THEN NULL ELSE pid END WHERE id = ?`)
        .run(status, reason ?? null, done ? 1 : 0, id),
    );
    if (info.changes === 0) throw new WorkspaceError('not-found', `no run "${id}" in ${this.dir}`);
  }

  /** Appends metric points in one transaction. Non-finite values are kept as NULL + nan flag (or ±Infinity). */
  appendMetrics(runId: string, points: { key: string; step: number; value: number }[]): void {
    if (points.length === 0) return;
    const step = Math.max(...points.map((p) => p.step));
    const ins = this.db.prepare('INSERT INTO metrics (run_id, key, step, value, nan, at) VALUES (?, ?, ?, ?, ?, ?)');
    const t = Date.now() / 1000;
    this.tx(() => {
      for (const p of points)
        ins.run(runId, p.key, p.step, Number.isNaN(p.value) ? null : p.value, Number.isNaN(p.value) ? 1 : 0, t);
      this.db.prepare('UPDATE runs SET steps = MAX(steps, ?) WHERE id = ?').run(step, runId);
      crashPoint(`metrics of ${runId} inserted, not committed`);
    });
    crashPoint(`metrics of ${runId} committed`);
  }

  finishRun(
    id: string,
    r: {
      status: RunStatus;
      steps: number;
      reason?: string;
      tokensPerSec?: number;
      trainSeconds?: number;
      device?: string;
    },
  ): void {
    this.tx(() => {
      this.db
        .prepare(
          `UPDATE runs SET status = ?, steps = ?, reason = ?, tokens_per_sec = COALESCE(?, tokens_per_sec), train_seconds = COALESCE(train_seconds, 0) + COALESCE(?, 0),
        device = COALESCE(?, device), finished_at = CASE WHEN ? IN ('finished', 'failed', 'diverged') THEN ? ELSE finished_at END, pid = NULL WHERE id = ?`,
        )
        .run(
          r.status,
          r.steps,
          r.reason ?? null,
          r.tokensPerSec ?? null,
          r.trainSeconds ?? null,
          r.device ?? null,
          r.status,
          now(),
          id,
        );
      crashPoint(`run ${id} finished, not committed`);
    });
  }

  getRun(id: string): RunRow {
    const r = this.db.prepare('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
    if (r) return r;
    // A prefix compared as text: LIKE would read "%" and "_" in the user's words as wildcards (and ignore case).
    const byPrefix = id
      ? (this.db.prepare('SELECT * FROM runs WHERE substr(id, 1, length(?)) = ? ORDER BY id').all(id, id) as RunRow[])
      : [];
    if (byPrefix.length === 1) return byPrefix[0];
    throw new WorkspaceError(
      'not-found',
      byPrefix.length > 1
        ? `run id "${id}" is ambiguous: ${byPrefix.map((x) => x.id).join(', ')}`
        : `no run "${id}" in ${this.dir} (see 'delta-studio runs list')`,
    );
  }

  listRuns(
    filter: { status?: RunStatus; method?: string; datasetVersionId?: number } = {},
  ): (RunRow & { metrics: Record<string, number | null> })[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.status) {
      where.push('status = ?');
      args.push(filter.status);
    }
    if (filter.method) {
      where.push('method = ?');
      args.push(filter.method);
    }
    if (filter.datasetVersionId !== undefined) {
      where.push('dataset_version_id = ?');
      args.push(filter.datasetVersionId);
    }
    const rows = this.db
      .prepare(`SELECT * FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id`)
      .all(...args) as RunRow[];
    return rows.map((r) => ({ ...r, metrics: this.latestMetrics(r.id) }));
  }

  /** The latest value of every metric of a run (NaN as null). */
  latestMetrics(runId: string): Record<string, number | null> {
    const rows = this.db
      .prepare('SELECT key, value, nan FROM metric_latest WHERE run_id = ? ORDER BY key')
      .all(runId) as { key: string; value: number | null; nan: number }[];
    return Object.fromEntries(rows.map((r) => [r.key, r.nan ? null : r.value]));
  }

  /** One metric's series; where a step was recorded twice (a resumed run repeats the steps after its checkpoint), the last record wins. */
  metricSeries(runId: string, key: string): MetricPoint[] {
    const rows = this.db
      .prepare(
        `SELECT step, value, nan FROM metrics WHERE id IN (SELECT MAX(id) FROM metrics WHERE run_id = ? AND key = ? GROUP BY step) ORDER BY step`,
      )
      .all(runId, key) as { step: number; value: number | null; nan: number }[];
    return rows.map((r) => ({ step: r.step, value: r.value, nan: r.nan === 1 }));
  }

  metricKeys(runId: string): string[] {
    return (
      this.db.prepare('SELECT DISTINCT key FROM metrics WHERE run_id = ? ORDER BY key').all(runId) as { key: string }[]
    ).map((r) => r.key);
  }

  // ——— plugins ———

  /**
   * Registers a new version of plugin `name`: the next version number, the .delta file written atomically under
   * plugins/<name>/, the row, and the `latest` alias (and `best` when its metric beats the current best), all under
   * one write lock so that concurrent registrations get distinct versions.
   */
  registerPlugin(p: {
    name: string;
    tensors: Record<string, HostTensor>;
    meta: Omit<PluginMeta, 'tensorsSha256' | 'formatVersion' | 'plugin' | 'version' | 'createdAt'>;
    runId?: string;
    modelId?: number;
    source?: string;
    notes?: string;
  }): PluginVersionRow {
    const name = p.name.trim();
    if (!name || name !== safeName(name))
      throw new WorkspaceError(
        'bad-input',
        `plugin name "${p.name}" must be letters, digits, ".", "-" or "_" (for example "${safeName(p.name)}")`,
      );
    const trainable = Object.values(p.tensors).reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    const id = this.tx(() => {
      this.db
        .prepare('INSERT INTO plugins (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING')
        .run(name, now());
      const { id: pluginId } = this.db.prepare('SELECT id FROM plugins WHERE name = ?').get(name) as { id: number };
      const { v } = this.db
        .prepare('SELECT COALESCE(MAX(version), 0) + 1 AS v FROM plugin_versions WHERE plugin_id = ?')
        .get(pluginId) as { v: number };
      const rel = join('plugins', name, `${name}-v${v}${PLUGIN_EXTENSION}`);
      mkdirSync(this.path(join('plugins', name)), { recursive: true });
      const createdAt = now();
      const { sha256, size } = writePlugin(
        this.path(rel),
        { ...p.meta, plugin: name, version: v, createdAt, runId: p.runId ?? p.meta.runId },
        p.tensors,
      );
      const info = this.db
        .prepare(
          `INSERT INTO plugin_versions (plugin_id, version, file, sha256, size, method, methods, task, labels, base_fingerprint, model_id, run_id, source, metrics, trainable_params, notes, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          pluginId,
          v,
          rel,
          sha256,
          size,
          p.meta.methods.map((m) => m.method).join('+'),
          JSON.stringify(p.meta.methods),
          p.meta.task,
          p.meta.labels ? JSON.stringify(p.meta.labels) : null,
          p.meta.base.fingerprint,
          p.modelId ?? null,
          p.runId ?? null,
          p.source ?? (p.runId ? 'run' : 'unknown'),
          JSON.stringify(p.meta.metrics),
          trainable,
          p.notes ?? '',
          createdAt,
        );
      const versionId = Number(info.lastInsertRowid);
      this.setAliasIn(pluginId, 'latest', versionId);
      const best = this.bestOf(pluginId);
      if (best !== undefined) this.setAliasIn(pluginId, 'best', best);
      crashPoint(`plugin ${name} v${v} inserted, not committed`);
      return versionId;
    });
    crashPoint(`plugin ${name} committed`);
    return this.pluginVersionById(id);
  }

  /** Registers a plugin file made elsewhere (verified first) as a new version of `name` (default: its own name). */
  importPluginFile(file: string, opts: { name?: string; source?: string; notes?: string } = {}): PluginVersionRow {
    const plugin = readPlugin(file);
    const { tensorsSha256: _s, formatVersion: _f, plugin: own, version: _v, createdAt: _c, ...meta } = plugin.meta;
    void _s;
    void _f;
    void _v;
    void _c;
    const model = this.db
      .prepare('SELECT id FROM models WHERE fingerprint = ? ORDER BY id LIMIT 1')
      .get(meta.base.fingerprint) as { id: number } | undefined;
    const runKnown = meta.runId && this.db.prepare('SELECT 1 FROM runs WHERE id = ?').get(meta.runId);
    return this.registerPlugin({
      name: opts.name ?? own ?? safeName(basename(file, PLUGIN_EXTENSION)),
      tensors: plugin.tensors,
      meta: { ...meta, runId: runKnown ? meta.runId : undefined },
      runId: runKnown ? meta.runId : undefined,
      modelId: model?.id,
      source: opts.source ?? `file:${resolve(file)}`,
      notes: opts.notes,
    });
  }

  /** The version the `best` alias should point at: by the first higher-is-better metric versions have, else lowest loss. */
  private bestOf(pluginId: number): number | undefined {
    const vs = this.db
      .prepare('SELECT id, metrics FROM plugin_versions WHERE plugin_id = ? ORDER BY version')
      .all(pluginId) as { id: number; metrics: string }[];
    const parsed = vs.map((v) => ({ id: v.id, m: JSON.parse(v.metrics) as Record<string, number> }));
    for (const key of [...HIGHER, ...LOWER]) {
      const have = parsed.filter((v) => typeof v.m[key] === 'number' && Number.isFinite(v.m[key]));
      if (!have.length) continue;
      const sign = HIGHER.includes(key) ? 1 : -1;
      // Ties go to the earlier version: a re-run that is only as good does not move `best`.
      return have.reduce((a, b) => (sign * b.m[key] > sign * a.m[key] ? b : a)).id;
    }
    return undefined;
  }

  private setAliasIn(pluginId: number, alias: string, versionId: number): void {
    this.db
      .prepare(
        'INSERT INTO plugin_aliases (plugin_id, alias, version_id) VALUES (?, ?, ?) ON CONFLICT (plugin_id, alias) DO UPDATE SET version_id = excluded.version_id',
      )
      .run(pluginId, alias, versionId);
  }

  private pluginVersionById(id: number): PluginVersionRow {
    return this.db
      .prepare(
        'SELECT v.*, p.name AS plugin FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id WHERE v.id = ?',
      )
      .get(id) as PluginVersionRow;
  }

  /** A plugin version by reference: "name" (its latest), "name@3", "name@best" or "name@<alias>". */
  resolvePlugin(ref: string): PluginVersionRow {
    const at = ref.lastIndexOf('@');
    const name = at < 0 ? ref : ref.slice(0, at);
    const sel = at < 0 ? 'latest' : ref.slice(at + 1);
    const p = this.db.prepare('SELECT id FROM plugins WHERE name = ?').get(name) as { id: number } | undefined;
    if (!p) {
      const names = (this.db.prepare('SELECT name FROM plugins ORDER BY name').all() as { name: string }[]).map(
        (r) => r.name,
      );
      throw new WorkspaceError(
        'not-found',
        `no plugin "${name}" in ${this.dir}${names.length ? ` (plugins: ${names.join(', ')})` : ' (it has no plugins yet)'}`,
      );
    }
    let row: { id: number } | undefined;
    if (/^v?\d+$/.test(sel))
      row = this.db
        .prepare('SELECT id FROM plugin_versions WHERE plugin_id = ? AND version = ?')
        .get(p.id, Number(sel.replace(/^v/, ''))) as { id: number } | undefined;
    else
      row = this.db
        .prepare('SELECT version_id AS id FROM plugin_aliases WHERE plugin_id = ? AND alias = ?')
        .get(p.id, sel) as { id: number } | undefined;
    if (!row)
      throw new WorkspaceError(
        'not-found',
        `plugin "${name}" has no ${/^v?\d+$/.test(sel) ? 'version' : 'alias'} "${sel}"`,
      );
    return this.pluginVersionById(row.id);
  }

  /** The plugin version a run registered, if any. */
  pluginOfRun(runId: string): PluginVersionRow | undefined {
    const row = this.db
      .prepare('SELECT id FROM plugin_versions WHERE run_id = ? ORDER BY id DESC LIMIT 1')
      .get(runId) as { id: number } | undefined;
    return row ? this.pluginVersionById(row.id) : undefined;
  }

  /** Loads a plugin version's file, verifying its sha256 against the index and its own tensor digest. */
  loadPlugin(ref: string | PluginVersionRow): Plugin & { row: PluginVersionRow } {
    const row = typeof ref === 'string' ? this.resolvePlugin(ref) : ref;
    const file = this.path(row.file);
    if (!existsSync(file))
      throw new WorkspaceError(
        'damaged',
        `${file} (plugin ${row.plugin} v${row.version}) is missing; run 'delta-studio workspace check'`,
      );
    const size = statSync(file).size;
    if (size !== row.size)
      throw new WorkspaceError(
        'damaged',
        `${file} (plugin ${row.plugin} v${row.version}) has ${size} bytes, the workspace recorded ${row.size}: it is truncated or was changed; do not use it`,
      );
    const plugin = readPlugin(file);
    return { ...plugin, row };
  }

  listPlugins(): {
    name: string;
    description: string;
    versions: number;
    latest: number;
    aliases: Record<string, number>;
    method: string;
    task: string;
  }[] {
    const ps = this.db
      .prepare(
        `SELECT p.id, p.name, p.description, COUNT(v.id) AS versions, MAX(v.version) AS latest FROM plugins p LEFT JOIN plugin_versions v ON v.plugin_id = p.id GROUP BY p.id ORDER BY p.name`,
      )
      .all() as { id: number; name: string; description: string; versions: number; latest: number }[];
    return ps.map((p) => {
      const top = this.db
        .prepare('SELECT method, task FROM plugin_versions WHERE plugin_id = ? ORDER BY version DESC LIMIT 1')
        .get(p.id) as { method: string; task: string } | undefined;
      return {
        name: p.name,
        description: p.description,
        versions: p.versions,
        latest: p.latest,
        aliases: this.aliasesOf(p.id),
        method: top?.method ?? '',
        task: top?.task ?? '',
      };
    });
  }

  private aliasesOf(pluginId: number): Record<string, number> {
    const rows = this.db
      .prepare(
        'SELECT a.alias, v.version FROM plugin_aliases a JOIN plugin_versions v ON v.id = a.version_id WHERE a.plugin_id = ? ORDER BY a.alias',
      )
      .all(pluginId) as { alias: string; version: number }[];
    return Object.fromEntries(rows.map((r) => [r.alias, r.version]));
  }

  showPlugin(name: string): {
    name: string;
    description: string;
    aliases: Record<string, number>;
    versions: (PluginVersionRow & {
      tags: string[];
      exports: { format: string; path: string; created_at: string }[];
    })[];
  } {
    const p = this.db.prepare('SELECT id, name, description FROM plugins WHERE name = ?').get(name) as
      { id: number; name: string; description: string } | undefined;
    if (!p) this.resolvePlugin(name);
    const versions = (
      this.db
        .prepare('SELECT v.*, ? AS plugin FROM plugin_versions v WHERE plugin_id = ? ORDER BY version')
        .all(p!.name, p!.id) as PluginVersionRow[]
    ).map((v) => ({
      ...v,
      tags: (
        this.db.prepare('SELECT tag FROM plugin_tags WHERE version_id = ? ORDER BY tag').all(v.id) as { tag: string }[]
      ).map((t) => t.tag),
      exports: this.db
        .prepare('SELECT format, path, created_at FROM exports WHERE plugin_version_id = ? ORDER BY id')
        .all(v.id) as { format: string; path: string; created_at: string }[],
    }));
    return { name: p!.name, description: p!.description, aliases: this.aliasesOf(p!.id), versions };
  }

  /** Points an alias of the plugin at a version ("latest" is moved by registration; "best" and the user's own here). */
  setAlias(ref: string, alias: string): PluginVersionRow {
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(alias))
      throw new WorkspaceError(
        'bad-input',
        `alias "${alias}" must start with a letter and hold only letters, digits, "-" and "_"`,
      );
    if (alias === 'latest')
      throw new WorkspaceError('bad-input', 'the "latest" alias always names the newest version; choose another alias');
    const v = this.resolvePlugin(ref);
    this.write(() => this.setAliasIn(v.plugin_id, alias, v.id));
    return v;
  }

  removeAlias(name: string, alias: string): void {
    const p = this.resolvePlugin(name);
    if (alias === 'latest') throw new WorkspaceError('bad-input', 'the "latest" alias cannot be removed');
    const info = this.write(() =>
      this.db.prepare('DELETE FROM plugin_aliases WHERE plugin_id = ? AND alias = ?').run(p.plugin_id, alias),
    );
    if (!info.changes) throw new WorkspaceError('not-found', `plugin "${p.plugin}" has no alias "${alias}"`);
  }

  tag(ref: string, add: string[], remove: string[] = []): string[] {
    const v = this.resolvePlugin(ref);
    for (const t of add)
      if (!t.trim() || t.length > 64) throw new WorkspaceError('bad-input', `tag "${t}" must be 1 to 64 characters`);
    this.tx(() => {
      for (const t of add)
        this.db.prepare('INSERT OR IGNORE INTO plugin_tags (version_id, tag) VALUES (?, ?)').run(v.id, t.trim());
      for (const t of remove)
        this.db.prepare('DELETE FROM plugin_tags WHERE version_id = ? AND tag = ?').run(v.id, t.trim());
    });
    return (
      this.db.prepare('SELECT tag FROM plugin_tags WHERE version_id = ? ORDER BY tag').all(v.id) as { tag: string }[]
    ).map((t) => t.tag);
  }

  setNotes(ref: string, notes: string): void {
    const v = this.resolvePlugin(ref);
    this.write(() => this.db.prepare('UPDATE plugin_versions SET notes = ? WHERE id = ?').run(notes, v.id));
  }

  recordExport(
    versionId: number,
    format: 'peft' | 'merged' | 'onnx' | 'bundle',
    path: string,
    options: unknown = {},
    size?: number,
  ): number {
    const info = this.write(() =>
      this.db
        .prepare(
          'INSERT INTO exports (plugin_version_id, format, path, options, size, created_at) VALUES (?, ?, ?, ?, ?, ?)',
        )
        .run(versionId, format, resolve(path), JSON.stringify(options), size ?? null, now()),
    );
    return Number(info.lastInsertRowid);
  }

  /** Where a plugin version came from and went: model and dataset version → run → this version → exports. */
  lineage(ref: string): {
    model?: ModelRow;
    dataset?: { id: number; dataset: string; digest: string; dir: string; task: string };
    run?: RunRow;
    plugin: PluginVersionRow;
    exports: { id: number; format: string; path: string; created_at: string }[];
  } {
    const plugin = this.resolvePlugin(ref);
    const run = plugin.run_id ? this.getRun(plugin.run_id) : undefined;
    const model =
      plugin.model_id !== null
        ? this.getModel(plugin.model_id)
        : run?.model_id != null
          ? this.getModel(run.model_id)
          : undefined;
    const dataset = run?.dataset_version_id != null ? this.datasetVersion(run.dataset_version_id) : undefined;
    const exports = this.db
      .prepare(
        "SELECT e.id, e.format, e.path, e.created_at FROM lineage l JOIN exports e ON CAST(e.id AS TEXT) = l.to_id WHERE l.from_kind = 'plugin_version' AND l.from_id = ? ORDER BY e.id",
      )
      .all(String(plugin.id)) as { id: number; format: string; path: string; created_at: string }[];
    return { model, dataset, run, plugin, exports };
  }

  /** A fresh run id: sortable by time, unique. */
  static newRunId(): string {
    return `${new Date().toISOString().replace(/[-:]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
  }

  /** Every file the index points at, relative to the workspace (for `check`). */
  indexedFiles(): {
    kind: 'plugin' | 'dataset' | 'run' | 'model';
    rel: string;
    sha256?: string;
    size?: number;
    label: string;
  }[] {
    const out: {
      kind: 'plugin' | 'dataset' | 'run' | 'model';
      rel: string;
      sha256?: string;
      size?: number;
      label: string;
    }[] = [];
    for (const v of this.db
      .prepare(
        'SELECT v.file, v.sha256, v.size, v.version, p.name FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id',
      )
      .all() as { file: string; sha256: string; size: number; version: number; name: string }[]) {
      out.push({
        kind: 'plugin',
        rel: v.file,
        sha256: v.sha256,
        size: v.size,
        label: `plugin ${v.name} v${v.version}`,
      });
    }
    for (const d of this.db
      .prepare('SELECT v.dir, v.digest, d.name FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id')
      .all() as { dir: string; digest: string; name: string }[]) {
      out.push({ kind: 'dataset', rel: d.dir, label: `dataset ${d.name} ${d.digest.slice(0, 12)}` });
    }
    for (const r of this.db.prepare('SELECT id, dir FROM runs').all() as { id: string; dir: string }[])
      out.push({ kind: 'run', rel: r.dir, label: `run ${r.id}` });
    for (const m of this.db.prepare('SELECT name, path FROM models WHERE copied = 1').all() as {
      name: string;
      path: string;
    }[])
      out.push({ kind: 'model', rel: m.path, label: `model ${m.name}` });
    return out;
  }

  /** Entries of a workspace folder (for `check`'s orphan scan). */
  entries(folder: (typeof FOLDERS)[number]): string[] {
    const dir = join(this.dir, folder);
    return existsSync(dir) ? readdirSync(dir) : [];
  }
}
