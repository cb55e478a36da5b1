// `workspace check`: verifies that the index (the database) and the payload (the files) agree — SQLite's
// integrity and foreign-key checks, every plugin file's size and sha256, every dataset and copied model present —
// and finds what a crash can leave behind: temp files, and files written whose row was never committed (orphans).
// With repair it deletes temp files, moves orphans to lost+found/ (nothing is deleted that might be wanted) and
// marks runs of dead processes interrupted. What cannot be repaired safely (a damaged or missing plugin) is reported.
// A temp whose owner (named in it: pid and host) still runs is work in progress — an import, a copy, a write — and is
// reported as in use, never touched.
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseTemp, tempState } from '../files/temp.js';
import { fileSha256 } from '../plugins/format.js';
import { DB_FILE, Workspace, WorkspaceError } from './workspace.js';
import type { CheckProblem as Problem, CheckReport } from '../contract/types.js';

export type { CheckProblem as Problem, CheckReport } from '../contract/types.js';

const isTemp = (name: string): boolean => parseTemp(name) !== null;

function moveToLostFound(ws: Workspace, rel: string): string {
  const dest = join(
    ws.dir,
    'lost+found',
    `${new Date().toISOString().replace(/[:.]/g, '-')}-${rel.replace(/[\\/]/g, '__')}`,
  );
  mkdirSync(join(ws.dir, 'lost+found'), { recursive: true });
  renameSync(join(ws.dir, rel), dest);
  return `moved to ${dest.slice(ws.dir.length + 1)}`;
}

export function checkWorkspace(dir: string, opts: { repair?: boolean } = {}): CheckReport {
  let ws: Workspace;
  try {
    ws = Workspace.open(dir);
  } catch (e) {
    if (!(e instanceof WorkspaceError) || e.code !== 'damaged') throw e;
    return damagedReport(dir, e);
  }
  try {
    return checkOpen(ws, opts.repair === true);
  } finally {
    ws.close();
  }
}

function damagedReport(dir: string, e: WorkspaceError): CheckReport {
  const problems: Problem[] = [{ severity: 'error', kind: 'database', path: DB_FILE, message: e.message }];
  let schemaVersion = 0;
  try {
    const db = new Database(join(dir, DB_FILE), { readonly: true });
    schemaVersion = db.pragma('user_version', { simple: true }) as number;
    for (const r of db.pragma('integrity_check') as { integrity_check: string }[])
      if (r.integrity_check !== 'ok')
        problems.push({ severity: 'error', kind: 'database', message: r.integrity_check });
    db.close();
  } catch (err) {
    problems.push({ severity: 'error', kind: 'database', message: `cannot read it at all: ${(err as Error).message}` });
  }
  const backups = existsSync(dir)
    ? readdirSync(dir).filter((f) => f.startsWith(`${DB_FILE}.v`) && f.endsWith('.bak'))
    : [];
  problems.push({
    severity: 'error',
    kind: 'database',
    message: backups.length
      ? `backups made before migrations: ${backups.join(', ')}; copy one over ${DB_FILE} to restore it (the files are untouched)`
      : 'no backup exists; the plugin files themselves are self-describing and can be imported into a new workspace with "plugins import"',
  });
  return {
    workspace: dir,
    ok: false,
    schemaVersion,
    checked: { plugins: 0, datasets: 0, runs: 0, models: 0, bytesHashed: 0 },
    problems,
  };
}

function checkOpen(ws: Workspace, repair: boolean): CheckReport {
  const problems: Problem[] = [];
  for (const id of ws.recovered)
    problems.push({
      severity: 'warning',
      kind: 'interrupted',
      message: `run ${id} was left running by a process that is gone`,
      repaired: 'marked interrupted (resume it with delta-studio resume)',
    });
  for (const r of ws.db.pragma('integrity_check') as { integrity_check: string }[])
    if (r.integrity_check !== 'ok')
      problems.push({ severity: 'error', kind: 'database', message: `integrity_check: ${r.integrity_check}` });
  for (const r of ws.db.pragma('foreign_key_check') as { table: string; rowid: number; parent: string }[])
    problems.push({
      severity: 'error',
      kind: 'database',
      message: `row ${r.rowid} of ${r.table} refers to a missing ${r.parent}`,
    });

  const files = ws.indexedFiles();
  const indexed = new Set(files.map((f) => f.rel.replaceAll('\\', '/')));
  let bytesHashed = 0;
  const checked = { plugins: 0, datasets: 0, runs: 0, models: 0, bytesHashed: 0 };
  for (const f of files) {
    const abs = join(ws.dir, f.rel);
    if (f.kind === 'plugin') {
      checked.plugins++;
      if (!existsSync(abs)) {
        problems.push({ severity: 'error', kind: 'missing', path: f.rel, message: `${f.label}: file missing` });
        continue;
      }
      const size = statSync(abs).size;
      if (size !== f.size) {
        problems.push({
          severity: 'error',
          kind: 'corrupt',
          path: f.rel,
          message: `${f.label}: ${size} bytes, ${f.size} recorded (truncated or changed)`,
        });
        continue;
      }
      const sha = fileSha256(abs);
      bytesHashed += size;
      if (sha !== f.sha256)
        problems.push({
          severity: 'error',
          kind: 'corrupt',
          path: f.rel,
          message: `${f.label}: sha256 ${sha.slice(0, 16)}…, ${f.sha256!.slice(0, 16)}… recorded (the file was changed or damaged)`,
        });
    } else if (f.kind === 'dataset') {
      checked.datasets++;
      if (!existsSync(join(abs, 'dataset.json')))
        problems.push({
          severity: 'error',
          kind: 'missing',
          path: f.rel,
          message: `${f.label}: folder or its dataset.json missing`,
        });
    } else if (f.kind === 'run') {
      checked.runs++;
      // A queued run may not have made its folder yet; a missing one loses checkpoints, not the record.
      if (!existsSync(abs))
        problems.push({
          severity: 'warning',
          kind: 'missing',
          path: f.rel,
          message: `${f.label}: folder missing (its checkpoints and logs are gone; its record and metrics remain)`,
        });
    } else {
      checked.models++;
      if (!existsSync(join(abs, 'config.json')))
        problems.push({
          severity: 'error',
          kind: 'missing',
          path: f.rel,
          message: `${f.label}: copied model folder missing`,
        });
    }
  }
  checked.bytesHashed = bytesHashed;

  // Orphans and temp files, folder by folder.
  const orphan = (rel: string, what: string): void => {
    const p: Problem = {
      severity: 'warning',
      kind: 'orphan',
      path: rel,
      message: `${what} not in the index (written by a process that stopped before recording it)`,
    };
    if (repair) p.repaired = moveToLostFound(ws, rel);
    problems.push(p);
  };
  const temp = (rel: string): void => {
    const owner = parseTemp(rel.slice(rel.lastIndexOf('/') + 1))?.owner ?? null;
    const state = tempState(owner);
    if (state !== 'dead') {
      problems.push({
        severity: 'warning',
        kind: 'temp',
        path: rel,
        message:
          state === 'live'
            ? `in use by process ${owner!.pid} on this machine (a write or import in progress); left alone`
            : `made by process ${owner!.pid} on ${owner!.host}, which cannot be asked from here; left alone (delete it once that process has ended)`,
      });
      return;
    }
    const p: Problem = {
      severity: 'warning',
      kind: 'temp',
      path: rel,
      message: 'unfinished temporary file of an interrupted write',
    };
    if (repair) {
      rmSync(join(ws.dir, rel), { recursive: true, force: true });
      p.repaired = 'deleted';
    }
    problems.push(p);
  };
  for (const name of ws.entries('plugins')) {
    const rel = `plugins/${name}`;
    if (isTemp(name)) {
      temp(rel);
      continue;
    }
    if (!statSync(join(ws.dir, rel)).isDirectory()) {
      orphan(rel, 'file');
      continue;
    }
    for (const f of readdirSync(join(ws.dir, rel))) {
      const frel = `${rel}/${f}`;
      if (isTemp(f)) temp(frel);
      else if (!indexed.has(frel)) orphan(frel, 'plugin file');
    }
  }
  for (const folder of ['datasets', 'runs', 'models'] as const) {
    for (const name of ws.entries(folder)) {
      const rel = `${folder}/${name}`;
      if (isTemp(name)) temp(rel);
      else if (!indexed.has(rel) && !(folder === 'models' && !statSync(join(ws.dir, rel)).isDirectory()))
        orphan(rel, folder === 'datasets' ? 'dataset folder' : folder === 'runs' ? 'run folder' : 'model folder');
    }
  }
  for (const r of ws.listRuns())
    for (const sub of [r.dir, `${r.dir}/checkpoints`]) {
      const dir = join(ws.dir, sub);
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir)) if (isTemp(f)) temp(`${sub}/${f}`);
    }
  return {
    workspace: ws.dir,
    ok: !problems.some((p) => p.severity === 'error'),
    schemaVersion: ws.schemaVersion,
    checked,
    problems,
  };
}
