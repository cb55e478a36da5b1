// The Hugging Face cache, laid out as huggingface_hub's file_download.py lays it out, so that transformers, vLLM or
// `huggingface-cli` find what we download and we find what they did:
//
//   <cache>/models--org--name/blobs/<etag>                 the file's bytes, named by its sha256 (LFS) or git oid
//   <cache>/models--org--name/blobs/<etag>.incomplete      while downloading (resumed from its length)
//   <cache>/models--org--name/snapshots/<commit>/<path>    → ../../blobs/<etag> (relative symlink)
//   <cache>/models--org--name/refs/<revision>              the commit a branch or tag pointed at (no newline)
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { getRepoFolderName } from '@huggingface/hub';
import { writeFileAtomic } from '../files/atomic.js';
import { insideJoin } from '../files/paths.js';
import { hostTag, tempName, tempState } from '../files/temp.js';
import { HubError } from './errors.js';

export const isCommit = (revision: string): boolean => /^[0-9a-f]{40}$/.test(revision);

/** The repository's folder in the cache: models--org--name. */
export function repoFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, getRepoFolderName({ type: 'model', name: repo }));
}

export const snapshotDir = (folder: string, commit: string): string => join(folder, 'snapshots', commit);

/** blobs/<etag>: an etag is a sha256 (LFS files) or a git oid (the others), nothing that could name a path. */
export function blobPath(folder: string, etag: string): string {
  if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(etag))
    throw new HubError('corrupt', `the Hub named a file's content "${etag}", which is neither a sha256 nor a git oid`);
  return join(folder, 'blobs', etag);
}

/** The commit refs/<revision> names, if the cache has it. */
export function readRef(folder: string, revision: string): string | null {
  if (isCommit(revision)) return revision;
  try {
    const commit = readFileSync(insideJoin(join(folder, 'refs'), revision, 'a revision'), 'utf8').trim();
    return isCommit(commit) ? commit : null;
  } catch {
    return null;
  }
}

/** refs/<revision> ← commit (atomically), for a branch or tag; a commit needs no ref. */
export function writeRef(folder: string, revision: string, commit: string): void {
  if (revision === commit || readRef(folder, revision) === commit) return;
  const file = insideJoin(join(folder, 'refs'), revision, 'a revision');
  mkdirSync(dirname(file), { recursive: true });
  writeFileAtomic(file, Buffer.from(commit));
}

/**
 * snapshots/<commit>/<path> → the blob, as a relative symlink (the cache can move), made under a temp name and
 * renamed over, so a reader sees the old link or the new one. Where links cannot be made (Windows without developer
 * mode), a copy of the blob, as huggingface_hub does.
 */
export function linkSnapshotFile(folder: string, commit: string, path: string, blob: string): string {
  const dir = snapshotDir(folder, commit);
  const link = insideJoin(dir, path, 'a file of the repository');
  mkdirSync(dirname(link), { recursive: true });
  const tmp = join(dirname(link), tempName(basename(link)));
  try {
    symlinkSync(relative(dirname(link), blob), tmp);
  } catch (e) {
    if (!['EPERM', 'EACCES', 'ENOTSUP', 'EINVAL'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
    copyFileSync(blob, tmp);
  }
  try {
    renameSync(tmp, link);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return link;
}

/**
 * What a snapshot lacks of what the engine reads: config.json, and model.safetensors or the index and every shard it
 * names (a link whose blob is gone counts as missing). Empty: a model folder the engine can load.
 */
export function missingFromSnapshot(dir: string): string[] {
  if (!existsSync(dir)) return [dir];
  const missing = existsSync(join(dir, 'config.json')) ? [] : ['config.json'];
  const index = join(dir, 'model.safetensors.index.json');
  if (!existsSync(index))
    return existsSync(join(dir, 'model.safetensors')) ? missing : [...missing, 'model.safetensors'];
  let shards: string[];
  try {
    const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: Record<string, unknown> }).weight_map ?? {};
    shards = [...new Set(Object.values(map).map(String))];
  } catch {
    return [...missing, 'model.safetensors.index.json'];
  }
  return [...missing, ...shards.filter((s) => s !== basename(s) || !existsSync(join(dir, s)))];
}

/** A snapshot the cache holds whole, found by name: the revision's commit (a commit, or refs/<revision>). */
export function cachedSnapshot(folder: string, revision: string): { commit: string; dir: string } | null {
  const commit = readRef(folder, revision);
  if (!commit) return null;
  const dir = snapshotDir(folder, commit);
  return missingFromSnapshot(dir).length ? null : { commit, dir };
}

/** The files of a snapshot folder: path, size and the blob each links to. */
export function snapshotFiles(dir: string): { path: string; size: number; blob: string }[] {
  const out: { path: string; size: number; blob: string }[] = [];
  const walk = (sub: string): void => {
    for (const name of readdirSync(join(dir, sub)).sort()) {
      const rel = sub ? `${sub}/${name}` : name;
      const abs = join(dir, rel);
      const st = lstatSync(abs);
      if (st.isDirectory()) walk(rel);
      else if (existsSync(abs))
        out.push({ path: rel, size: statSync(abs).size, blob: st.isSymbolicLink() ? basename(readlinkSync(abs)) : '' });
    }
  };
  walk('');
  return out;
}

/** Writes the last bytes of an open file to disk, then closes it. */
export function syncAndClose(fd: number): void {
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync of a folder, so that a rename in it survives a crash (where the filesystem allows it). */
export function syncFolder(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    syncAndClose(fd);
  } catch {
    /* some filesystems refuse fsync on folders */
  }
}

/**
 * Claims the download of one blob for this process: `.locks/models--org--name/<etag>.owner` holds `<pid>@<host>`,
 * made exclusively. A second pull of the same file (this process or another) is told to wait; the claim of a dead
 * process is taken over. (huggingface_hub's own `<etag>.lock` is an flock, which Node cannot take; the sha256 check
 * at the end is the safety net against a writer we cannot see.) Returns the release.
 */
export function claimBlob(folder: string, etag: string, file: string): () => void {
  const dir = join(dirname(folder), '.locks', basename(folder));
  mkdirSync(dir, { recursive: true });
  const claim = join(dir, `${etag}.owner`);
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(claim, `${process.pid}@${hostTag()}`, { flag: 'wx' });
      return () => rmSync(claim, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e;
    }
    const m = /^(\d+)@([A-Za-z0-9-]+)$/.exec(readFileSync(claim, 'utf8').trim());
    const state = m ? tempState({ pid: Number(m[1]), host: m[2] }) : 'dead';
    if (state !== 'dead')
      throw new HubError(
        'busy',
        `${file} is being downloaded by another pull (process ${m?.[1]}${state === 'elsewhere' ? ` on ${m?.[2]}` : ''}) into the same cache: wait for it to end, then pull again`,
      );
    rmSync(claim, { force: true });
  }
}
