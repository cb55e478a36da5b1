// One file of a repository into the cache, done by hand rather than by @huggingface/hub's downloadFileToCacheDir:
// that helper streams a fresh copy every time (no Range, so an interrupted 5 GB shard starts over), reports no
// progress, checks no hash and writes no fsync. Here: blobs/<etag>.incomplete is continued from its length with an
// HTTP Range, every byte goes through the sha256 the Hub lists for LFS files (git's sha1 for the small ones, bytes
// kept from before included), and only a checked file is fsynced and renamed to its blob, then linked into the
// snapshot. Redirects are followed by hand, as huggingface_hub does: the token goes to the Hub, never to the CDN a
// large file is redirected to, and the Hub's X-Linked-Etag / X-Linked-Size / X-Repo-Commit on the way are checked
// against what it listed. Without the Xet Accept header the Hub serves Xet-stored files as plain bytes too.
import { createHash, type Hash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { USER_AGENT, refusal, type HubContext, type RepoFile } from './api.js';
import { blobPath, claimBlob, syncAndClose, syncFolder } from './cache.js';
import { HubError, networkCause } from './errors.js';

export interface TransferOptions {
  ctx: HubContext;
  fetch: typeof fetch;
  token: string | null;
  /** The repository's folder in the cache (models--org--name). */
  folder: string;
  commit: string;
  file: RepoFile;
  /** Bytes of the file on disk so far, as they grow, and how many of them just came over the network. */
  onBytes?: (bytes: number, fetchedNow: number) => void;
  /** Network errors survived by continuing where the bytes stopped (default 2). */
  retries?: number;
  /** Milliseconds before the first retry (doubling; default 1000). */
  retryDelayMs?: number;
  signal?: AbortSignal;
}

export interface Transferred {
  blob: string;
  from: 'network' | 'resumed' | 'cache';
  /** Bytes fetched over the network. */
  fetched: number;
}

/** The cache's name for a file's content: its sha256 for LFS files, its git oid for the rest. */
export const etagOf = (f: RepoFile): string => f.lfs?.oid ?? f.oid;

/** Strips the quotes and weak prefix an ETag header carries. */
const normalEtag = (h: string | null): string | null => (h ? h.replace(/^W\//, '').replace(/^"|"$/g, '') : null);

/** A hash that ends equal to the Hub's id: sha256 of the bytes (LFS), or git's sha1 of "blob <size>\0" + bytes. */
function contentHash(f: RepoFile): Hash {
  if (f.lfs) return createHash('sha256');
  return createHash('sha1').update(`blob ${f.size}\0`);
}

async function hashFile(hash: Hash, file: string): Promise<void> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
}

const encodePath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');

/**
 * GET of the file from `start`, following redirects by hand: the Hub's headers on the way are checked against the
 * listing, the token is dropped when a redirect leaves the endpoint's origin.
 */
async function request(o: TransferOptions, start: number): Promise<Response> {
  const { ctx, file, commit } = o;
  const origin = new URL(ctx.endpoint).origin;
  let url = new URL(`${ctx.endpoint}/${ctx.repo}/resolve/${commit}/${encodePath(file.path)}`);
  for (let hop = 0; hop < 10; hop++) {
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, 'accept-encoding': 'identity' };
    if (start > 0) headers.range = `bytes=${start}-`;
    const fromHub = url.origin === origin;
    if (o.token && fromHub) headers.authorization = `Bearer ${o.token}`;
    const res = await o.fetch(url, { headers, redirect: 'manual', signal: o.signal });
    if (fromHub) checkHubHeaders(o, res);
    if (res.status >= 300 && res.status < 400 && res.headers.has('location')) {
      await res.body?.cancel();
      url = new URL(res.headers.get('location')!, url);
      continue;
    }
    if (!res.ok && res.status !== 416) {
      await res.body?.cancel();
      throw refusal(ctx, res.status, res.headers.get('x-error-code'), file.path);
    }
    return res;
  }
  throw new HubError('network', `${ctx.endpoint} redirected ${file.path} more than 10 times`);
}

/** What the Hub says about the file on the way must be what it listed: another commit or content is refused. */
function checkHubHeaders(o: TransferOptions, res: Response): void {
  if (!res.ok && !(res.status >= 300 && res.status < 400)) return;
  const { file } = o;
  const commit = res.headers.get('x-repo-commit');
  if (commit && commit !== o.commit)
    throw new HubError('corrupt', `the Hub served ${file.path} of commit ${commit}, not of ${o.commit}: pull again`);
  const etag = normalEtag(res.headers.get('x-linked-etag')) ?? (res.ok ? normalEtag(res.headers.get('etag')) : null);
  if (etag && etag !== etagOf(file))
    throw new HubError(
      'corrupt',
      `the Hub served ${file.path} as ${etag}, not the ${etagOf(file)} it listed: pull again`,
    );
  const size = res.headers.get('x-linked-size');
  if (size !== null && Number(size) !== file.size)
    throw new HubError('corrupt', `the Hub served ${file.path} with ${size} bytes, not the ${file.size} it listed`);
}

/** Writes the response body into `fd` from byte `at` on, through `hash`, counting each chunk. */
async function writeBody(
  res: Response,
  fd: number,
  at: number,
  hash: Hash,
  onChunk: (n: number) => void,
): Promise<void> {
  const reader = res.body?.getReader();
  if (!reader) return;
  for (let pos = at; ;) {
    const { done, value } = await reader.read();
    if (done) return;
    for (let off = 0; off < value.byteLength;) {
      const n = writeSync(fd, value, off, value.byteLength - off, pos);
      off += n;
      pos += n;
    }
    hash.update(value);
    onChunk(value.byteLength);
  }
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });

/** Downloads (or continues, or finds) one file's blob and checks it. */
export async function transferFile(o: TransferOptions): Promise<Transferred> {
  const { file } = o;
  const etag = etagOf(file);
  const blob = blobPath(o.folder, etag);
  if (existsSync(blob) && statSync(blob).size === file.size) {
    o.onBytes?.(file.size, 0);
    return { blob, from: 'cache', fetched: 0 };
  }
  mkdirSync(dirname(blob), { recursive: true });
  const release = claimBlob(o.folder, etag, file.path);
  const incomplete = `${blob}.incomplete`;
  let fd: number | null = null;
  try {
    let have = existsSync(incomplete) ? statSync(incomplete).size : 0;
    const hash = contentHash(file);
    if (have > file.size)
      have = 0; // longer than the file: not ours to continue
    else if (have > 0) await hashFile(hash, incomplete);
    const kept = have;
    fd = openSync(incomplete, have > 0 ? 'r+' : 'w');
    let fetched = 0;
    let fresh = hash;
    for (let attempt = 0; have < file.size; attempt++) {
      try {
        const res = await request(o, have);
        if (res.status === 416) throw refusal(o.ctx, 416, null, file.path);
        if (res.status === 206) {
          const range = /^bytes (\d+)-\d+\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
          if (!range || Number(range[1]) !== have)
            throw new HubError('corrupt', `the server sent ${file.path} from another byte than the one asked for`);
        } else if (have > 0) {
          // The server ignored the Range: the body is the whole file, so start the file and the hash over.
          have = 0;
          fresh = contentHash(file);
          ftruncateSync(fd, 0);
        }
        await writeBody(res, fd, have, fresh, (n) => {
          have += n;
          fetched += n;
          o.onBytes?.(have, n);
        });
        if (have > file.size)
          throw new HubError('corrupt', `the server sent more than the ${file.size} bytes of ${file.path}`);
        if (have < file.size) throw new HubError('network', `the connection closed before the end of ${file.path}`);
      } catch (e) {
        const cause = e instanceof HubError ? null : networkCause(e);
        if (!(cause || (e instanceof HubError && e.kind === 'network')) || o.signal?.aborted) throw e;
        if (attempt >= (o.retries ?? 2)) {
          const what = cause
            ? `the connection to ${o.ctx.endpoint} was lost during ${file.path} (${cause})`
            : (e as Error).message;
          throw new HubError('network', `${what}: its first ${have} of ${file.size} bytes are kept in the cache`, {
            cause: e,
          });
        }
        await sleep((o.retryDelayMs ?? 1000) * 2 ** attempt, o.signal);
      }
    }
    const digest = fresh.digest('hex');
    if (digest !== etag) {
      syncAndClose(fd);
      fd = null;
      rmSync(incomplete, { force: true }); // bad bytes: the next pull starts this file over
      throw new HubError(
        'corrupt',
        `${file.path} did not match the ${file.lfs ? 'sha256' : 'git id'} the Hub lists (${etag}, got ${digest}): it was discarded; pull again`,
      );
    }
    syncAndClose(fd);
    fd = null;
    renameSync(incomplete, blob);
    syncFolder(dirname(blob));
    return { blob, from: kept > 0 ? 'resumed' : 'network', fetched };
  } finally {
    if (fd !== null) syncAndClose(fd); // what arrived stays in .incomplete for the next pull
    release();
  }
}
