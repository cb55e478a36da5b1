import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { crashPoint } from './crash.js';
import { tempName } from './temp.js';

/** Writes `chunks` to `path` so that a crash leaves either the old file or the whole new one: temp file, fsync, rename, fsync dir. */
export function writeFileAtomic(path: string, chunks: Uint8Array | Uint8Array[]): void {
  const parts = Array.isArray(chunks) ? chunks : [chunks];
  const tmp = join(dirname(path), tempName(basename(path)));
  const fd = openSync(tmp, 'w', 0o644);
  try {
    for (const part of parts) {
      let off = 0;
      while (off < part.byteLength) off += writeSync(fd, part, off, part.byteLength - off);
    }
    crashPoint(`written, not synced: ${path}`);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
  try {
    closeSync(fd);
    crashPoint(`synced, not renamed: ${path}`);
    renameSync(tmp, path);
    crashPoint(`renamed: ${path}`);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
  // The rename itself must reach the disk too.
  try {
    const dfd = openSync(dirname(path), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    /* some filesystems refuse fsync on directories */
  }
}
