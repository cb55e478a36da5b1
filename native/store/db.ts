// The workspace database: SQLite in WAL mode (readers never block the writer), a busy timeout (a second process
// waits instead of failing with "database is locked"), foreign keys on, full fsync on commit, and numbered
// migrations tracked by PRAGMA user_version. An older database is backed up, then migrated one transaction per
// migration; a newer one is refused.
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { crashPoint } from '../files/crash.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations/index.js';

export type DB = Database.Database;

export class WorkspaceError extends Error {
  constructor(
    readonly code:
      'not-a-workspace' | 'newer-schema' | 'read-only' | 'damaged' | 'exists' | 'not-found' | 'bad-input' | 'conflict',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'WorkspaceError';
  }
}

export interface OpenOptions {
  /** Back up an older database before migrating it (default true). */
  backup?: boolean;
  /** Stop at this schema version (fixture making and migration tests only). */
  targetVersion?: number;
}

export function openDatabase(file: string, opts: OpenOptions = {}): { db: DB; migratedFrom?: number; backup?: string } {
  let db: DB;
  try {
    db = new Database(file, { fileMustExist: false });
  } catch (e) {
    throw new WorkspaceError(
      /readonly|read-only|EROFS|EACCES|unable to open/i.test((e as Error).message) ? 'read-only' : 'damaged',
      `${file}: cannot open the workspace database (${(e as Error).message})`,
      { cause: e },
    );
  }
  try {
    db.pragma('busy_timeout = 10000');
    // Read before anything writes (switching to WAL rewrites the header): a newer workspace is left byte-identical.
    const from = db.pragma('user_version', { simple: true }) as number;
    const target = opts.targetVersion ?? SCHEMA_VERSION;
    if (from > SCHEMA_VERSION) {
      throw new WorkspaceError(
        'newer-schema',
        `${file}: this workspace was written by a newer Delta Studio (schema version ${from}; this one knows up to ${SCHEMA_VERSION}). Update Delta Studio to open it; nothing was changed.`,
      );
    }
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal')
      throw new WorkspaceError(
        'read-only',
        `${file}: cannot switch the database to WAL mode (got "${String(mode)}"); is the disk read-only?`,
      );
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    const quick = db.pragma('quick_check', { simple: true });
    if (quick !== 'ok')
      throw new WorkspaceError(
        'damaged',
        `${file}: the database is damaged (${String(quick)}); run 'delta-studio workspace check --repair' on the workspace`,
      );
    let backup: string | undefined;
    if (from > 0 && from < target && opts.backup !== false) {
      backup = `${file}.v${from}.bak`;
      if (!existsSync(backup)) db.exec(`VACUUM INTO '${backup.replaceAll("'", "''")}'`);
    }
    for (const m of MIGRATIONS) {
      if (m.version <= from || m.version > target) continue;
      db.transaction(() => {
        db.exec(m.sql);
        crashPoint(`migration ${m.version} applied, not committed`);
        db.pragma(`user_version = ${m.version}`);
      }).immediate();
    }
    return { db, migratedFrom: from > 0 && from < target ? from : undefined, backup };
  } catch (e) {
    db.close();
    if (e instanceof WorkspaceError) throw e;
    const msg = (e as Error).message;
    if (/readonly|read-only/i.test(msg))
      throw new WorkspaceError(
        'read-only',
        `${file}: the workspace is on a read-only disk or folder (${msg}); copy it somewhere writable`,
        { cause: e },
      );
    if (/not a database|malformed|corrupt/i.test(msg))
      throw new WorkspaceError(
        'damaged',
        `${file}: not a usable workspace database (${msg}); run 'delta-studio workspace check --repair'`,
        { cause: e },
      );
    throw e;
  }
}
