// A full disk, whoever noticed it: SQLite ("database or disk is full", or "disk I/O error" when the disk really has
// no room), a write (ENOSPC), a quota (EDQUOT). Each is turned into one DiskFullError whose message names the folder,
// what is free and, when known, what the work needs, so the user reads one thing to do whatever failed first.
import { existsSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** What a piece of work needs on disk, for the message: "a run of this model needs about 1.2 MB (checkpoints, …)". */
export interface SpaceNeed {
  bytes: number;
  /** Who needs it: "a run of this model", "importing reviews.csv". */
  what: string;
  /** What the bytes are for, e.g. "checkpoints, plugin, metrics". */
  parts?: string;
  /** What to do once there is room: "resume it", "import it again". */
  then: string;
}

export class DiskFullError extends Error {
  readonly code = 'disk-full';
  constructor(
    /** The folder whose disk is full (the workspace, where one is involved). */
    readonly folder: string,
    readonly free: number,
    readonly needed: number | null,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'DiskFullError';
  }
}

/** Below this much free space an I/O error that does not say why is taken for a full disk. */
const NEARLY_FULL = 1024 * 1024;

/** "312 KB", "1.4 MB", "2.0 GB" (powers of 1000, as file managers show free space). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return 'an unknown amount';
  if (n < 1000) return `${Math.max(0, Math.round(n))} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1000;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/**
 * Bytes free for this user on the disk holding `dir` (its nearest existing folder). DELTA_STUDIO_FREE_BYTES, for
 * tests, stands in for the disk's answer.
 */
export function freeBytes(dir: string): number {
  const fake = process.env.DELTA_STUDIO_FREE_BYTES;
  if (fake !== undefined && fake !== '') return Number(fake);
  let at = resolve(dir);
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  try {
    const s = statfsSync(at);
    return s.bavail * s.bsize;
  } catch {
    return Infinity; // a filesystem that cannot say: nothing is refused on its account
  }
}

/** Whether `e` means the disk holding `dir` has no room left. */
export function isDiskFull(e: unknown, dir?: string): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (e instanceof DiskFullError || code === 'disk-full') return true;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL') return true;
  // SQLite reports a failed write to its journal as a plain I/O error: judge it by the space left.
  return (
    typeof code === 'string' && code.startsWith('SQLITE_IOERR') && dir !== undefined && freeBytes(dir) < NEARLY_FULL
  );
}

/** The one message: "the disk of <folder> is full: <free> free, <what> needs about <bytes> (<parts>); free space and <then>". */
export function diskFullError(folder: string, need?: SpaceNeed, cause?: unknown): DiskFullError {
  const free = freeBytes(folder);
  const needs = need
    ? `, ${need.what} needs about ${formatBytes(need.bytes)}${need.parts ? ` (${need.parts})` : ''}`
    : '';
  return new DiskFullError(
    folder,
    free,
    need?.bytes ?? null,
    `the disk of ${folder} is full: ${formatBytes(free)} free${needs}; free space and ${need?.then ?? 'try again'}`,
    cause === undefined ? undefined : { cause },
  );
}

/** `e` as a DiskFullError about `folder` when it means a full disk; any other error as it is. */
export function asDiskFull(e: unknown, folder: string, need?: SpaceNeed): unknown {
  return isDiskFull(e, folder) ? diskFullError(folder, need, e) : e;
}

/** Refuses work that will not fit: throws the DiskFullError when `folder`'s disk has less free than `need.bytes`. */
export function checkFreeSpace(folder: string, need: SpaceNeed): void {
  if (freeBytes(folder) < need.bytes) throw diskFullError(folder, need);
}
