// Paths built from names the user (or a file) chose must stay inside the folder they were meant for.
import { isAbsolute, relative, resolve, sep } from 'node:path';

export class PathEscapeError extends Error {
  constructor(
    readonly root: string,
    readonly path: string,
    what: string,
  ) {
    super(`${what} "${path}" escapes ${root}: only paths inside it are allowed (no "..", no absolute paths)`);
    this.name = 'PathEscapeError';
  }
}

/** Whether `path` (absolute, or relative to `root`) lies inside `root` (or is it). */
export function isInside(root: string, path: string): boolean {
  const rel = relative(resolve(root), resolve(root, path));
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** `root` joined with a relative path, refusing absolute paths and any that leave `root`. */
export function insideJoin(root: string, rel: string, what = 'path'): string {
  if (isAbsolute(rel) || /^[a-zA-Z]:[\\/]/.test(rel) || rel.includes('\0')) throw new PathEscapeError(root, rel, what);
  const parts = rel.split(/[\\/]+/);
  if (parts.includes('..')) throw new PathEscapeError(root, rel, what);
  const out = resolve(root, rel);
  if (!isInside(root, out)) throw new PathEscapeError(root, rel, what);
  return out;
}

/** A file or folder name made from a user's words: letters, digits, - _ . kept, the rest replaced by -. */
export function safeName(name: string): string {
  const s = name
    .normalize('NFKC')
    .replace(/[^\p{L}\p{N}._-]+/gu, '-')
    .replace(/^[.-]+|-+$/g, '');
  return s.slice(0, 100) || 'unnamed';
}
