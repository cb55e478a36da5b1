// A model by name from the Hugging Face Hub: the files the engine reads of one revision, into the Hugging Face cache
// (cache.ts), resumable and checked, with progress per file and in total. What is already there is not fetched again:
// a commit whose snapshot is whole makes no request at all; a branch or tag asks the Hub once which commit it is now
// (branches move); with HF_HUB_OFFLINE=1, or when the Hub cannot be reached, the cached snapshot of that revision is
// the answer.
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { HubFileProgress, HubPullProgress, HubPullResult } from '../contract/types.js';
import { HUB_REPO_ID, HUB_REVISION } from '../contract/vocabulary.js';
import { asDiskFull, checkFreeSpace } from '../files/disk.js';
import { gatedWithoutToken, hubClient, listRepoFiles, resolveRevision, type HubContext, type RepoFile } from './api.js';
import {
  blobPath,
  cachedSnapshot,
  isCommit,
  linkSnapshotFile,
  missingFromSnapshot,
  repoFolder,
  snapshotDir,
  snapshotFiles,
  writeRef,
} from './cache.js';
import { HubError } from './errors.js';
import { findToken, hubCacheDir, hubEndpoint, hubOffline, type Env } from './settings.js';
import { etagOf, transferFile } from './transfer.js';

export { HubError } from './errors.js';

/** Small files the engine (or a chat template) reads, besides the weights. */
const READ_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
];
const INDEX = 'model.safetensors.index.json';
/** Weights as pickles: loading one runs code, so they are never downloaded. */
const PICKLE = /\.(bin|pt|pth|ckpt|pkl|pickle)$/i;

export interface PullOptions {
  /** "org/name". */
  repo: string;
  /** A branch, tag or commit (default main). */
  revision?: string;
  /** A token given for this pull (else HF_TOKEN or the token file). */
  token?: string;
  /** Where HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN are read (default process.env). */
  env?: Env;
  fetch?: typeof fetch;
  /** Progress: at most every `progressMs` (default 100) and at every file's change of state. */
  onProgress?: (p: HubPullProgress) => void;
  progressMs?: number;
  /** Network errors a file survives by continuing where it stopped (default 2), and the first wait (ms). */
  retries?: number;
  retryDelayMs?: number;
  signal?: AbortSignal;
}

/** The files to fetch, small ones first and weights last: a snapshot with its weights is then whole. */
export function selectFiles(repo: string, listed: RepoFile[], shards: string[] | null): RepoFile[] {
  const byPath = new Map(listed.map((f) => [f.path, f]));
  if (!byPath.has('config.json'))
    throw new HubError(
      'unusable',
      `${repo} has no config.json: it is not a Hugging Face model folder the engine can read (config.json and *.safetensors)`,
    );
  const small = READ_FILES.filter((p) => byPath.has(p)).map((p) => byPath.get(p)!);
  let weights: RepoFile[];
  if (shards) {
    const absent = shards.filter((s) => !byPath.has(s));
    if (absent.length)
      throw new HubError(
        'unusable',
        `${repo}'s ${INDEX} names ${absent.join(', ')}, which the repository does not have`,
      );
    weights = [byPath.get(INDEX)!, ...shards.map((s) => byPath.get(s)!)];
  } else if (byPath.has('model.safetensors')) weights = [byPath.get('model.safetensors')!];
  else {
    const others = listed.filter((f) => f.path.endsWith('.safetensors')).map((f) => f.path);
    const pickles = listed.filter((f) => PICKLE.test(f.path)).map((f) => f.path);
    throw new HubError(
      'unusable',
      others.length
        ? `${repo} has no model.safetensors or ${INDEX} (only ${others.join(', ')}, which the engine does not read as a model)`
        : pickles.length
          ? `${repo} has no safetensors weights, only ${pickles.join(', ')}: pickles are refused (loading one can run code). Look for a safetensors copy of the model, or a "refs/pr/N" revision where the Hub's bot converted it`
          : `${repo} has no weights (no model.safetensors or ${INDEX})`,
    );
  }
  return [...small, ...weights];
}

/** The shard file names an index's weight_map names, each a plain file name beside it. */
function shardsOf(repo: string, indexFile: string): string[] {
  let map: unknown;
  try {
    map = (JSON.parse(readFileSync(indexFile, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    throw new HubError('unusable', `${repo}'s ${INDEX} is not JSON: ${(e as Error).message}`);
  }
  if (!map || typeof map !== 'object') throw new HubError('unusable', `${repo}'s ${INDEX} has no weight_map`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>).map(String))].sort();
  const bad = shards.find((s) => s.includes('/') || s.includes('\\') || s === '..' || s === '.' || !s);
  if (bad !== undefined) throw new HubError('unusable', `${repo}'s ${INDEX} names "${bad}", not a file beside it`);
  return shards;
}

function noteTokenizer(repo: string, files: { path: string }[]): string[] {
  return files.some((f) => f.path === 'tokenizer.json')
    ? []
    : [`${repo} has no tokenizer.json, which the engine reads to tokenize text: training and predictions need one`];
}

/** A result from the cache alone (no download). */
function fromCache(
  repo: string,
  revision: string,
  cacheDir: string,
  found: { commit: string; dir: string },
  tokenFrom: string | null,
  offline: boolean,
  notes: string[],
): HubPullResult {
  const files = snapshotFiles(found.dir).map((f) => ({ ...f, from: 'cache' as const }));
  return {
    repo,
    revision,
    commit: found.commit,
    snapshot: found.dir,
    cacheDir,
    files,
    totalBytes: files.reduce((a, f) => a + f.size, 0),
    fetchedBytes: 0,
    offline,
    tokenFrom,
    notes: [...notes, ...noteTokenizer(repo, files)],
  };
}

/** Bytes of `file` already on disk in the cache: its blob, or its .incomplete. */
function bytesOnDisk(folder: string, file: RepoFile): number {
  const blob = blobPath(folder, etagOf(file));
  if (existsSync(blob)) return statSync(blob).size;
  return existsSync(`${blob}.incomplete`) ? Math.min(file.size, statSync(`${blob}.incomplete`).size) : 0;
}

/** Downloads a model's files into the Hugging Face cache (or finds them there); returns its snapshot folder. */
export async function pullModel(o: PullOptions): Promise<HubPullResult> {
  const env = o.env ?? process.env;
  const repo = o.repo.trim();
  const revision = (o.revision ?? 'main').trim() || 'main';
  if (!HUB_REPO_ID.test(repo))
    throw new HubError('bad-input', `"${repo}" is not a model name of the Hub: it reads "org/name"`);
  if (!HUB_REVISION.test(revision))
    throw new HubError('bad-input', `"${revision}" is not a revision: a branch, a tag, a commit or "refs/pr/N"`);
  const cacheDir = hubCacheDir(env);
  const folder = repoFolder(cacheDir, repo);
  const token = findToken(o.token, env);
  const tokenFrom = token?.from ?? null;
  const endpoint = hubEndpoint(env);
  const ctx: HubContext = { repo, revision, endpoint, tokenFrom };
  const where = `${repo}@${revision}`;

  // A commit is immutable: when its snapshot is whole there is nothing to ask.
  if (isCommit(revision) && !missingFromSnapshot(snapshotDir(folder, revision)).length)
    return fromCache(
      repo,
      revision,
      cacheDir,
      { commit: revision, dir: snapshotDir(folder, revision) },
      tokenFrom,
      true,
      [],
    );
  if (hubOffline(env)) {
    const found = cachedSnapshot(folder, revision);
    if (!found)
      throw new HubError(
        'offline',
        `HF_HUB_OFFLINE is set and the cache (${cacheDir}) has no whole snapshot of ${where}: unset HF_HUB_OFFLINE to download it`,
      );
    return fromCache(repo, revision, cacheDir, found, tokenFrom, true, [
      `HF_HUB_OFFLINE is set: the cached snapshot of ${where} (commit ${found.commit.slice(0, 10)}) was used without asking the Hub`,
    ]);
  }

  const client = hubClient(o.fetch ?? fetch, endpoint, token?.token ?? null);
  let commit: string;
  let gated: false | 'auto' | 'manual';
  try {
    ({ commit, gated } = await resolveRevision(client, ctx));
  } catch (e) {
    if (!(e instanceof HubError) || e.kind !== 'network') throw e;
    const found = cachedSnapshot(folder, revision);
    if (!found)
      throw new HubError(
        'network',
        `${e.message}, and the cache (${cacheDir}) has no whole snapshot of ${where}: check the connection (or HF_ENDPOINT) and pull again`,
        { cause: e },
      );
    return fromCache(repo, revision, cacheDir, found, tokenFrom, true, [
      `${e.message}: the cached snapshot of ${where} (commit ${found.commit.slice(0, 10)}) was used; it may not be the newest`,
    ]);
  }
  if (gated && !token) throw gatedWithoutToken(repo);
  const snapshot = snapshotDir(folder, commit);
  if (!missingFromSnapshot(snapshot).length) {
    writeRef(folder, revision, commit);
    return fromCache(repo, revision, cacheDir, { commit, dir: snapshot }, tokenFrom, false, []);
  }

  const listed = await listRepoFiles(client, ctx, commit);
  const state = new Map<string, HubFileProgress>();
  let fetched = 0;
  let last = 0;
  const report = (force: boolean): void => {
    if (!o.onProgress || (!force && Date.now() - last < (o.progressMs ?? 100))) return;
    last = Date.now();
    const files = [...state.values()].map((f) => ({ ...f }));
    o.onProgress({
      repo,
      revision,
      commit,
      files,
      bytes: files.reduce((a, f) => a + f.bytes, 0),
      total: files.reduce((a, f) => a + f.size, 0),
      fetched,
    });
  };
  const done: HubPullResult['files'] = [];
  const fetchOne = async (file: RepoFile): Promise<void> => {
    const s = state.get(file.path) ?? { path: file.path, size: file.size, bytes: 0, state: 'waiting' as const };
    state.set(file.path, s);
    s.state = 'downloading';
    report(true);
    try {
      const t = await transferFile({
        ctx,
        fetch: o.fetch ?? fetch,
        token: token?.token ?? null,
        folder,
        commit,
        file,
        retries: o.retries,
        retryDelayMs: o.retryDelayMs,
        signal: o.signal,
        onBytes: (bytes, fetchedNow) => {
          fetched += fetchedNow;
          s.bytes = bytes;
          if (bytes === file.size) s.state = 'checking';
          report(false);
        },
      });
      linkSnapshotFile(folder, commit, file.path, t.blob);
      s.state = t.from === 'cache' ? 'cached' : 'done';
      s.bytes = file.size;
      done.push({ path: file.path, size: file.size, blob: etagOf(file), from: t.from });
      report(true);
    } catch (e) {
      if (e instanceof HubError && e.kind === 'network')
        throw new HubError(
          'network',
          `${e.message}; ${done.length} of ${state.size} files are complete: start the same pull of ${where} again and it continues where it stopped`,
          { cause: e },
        );
      throw asDiskFull(e, cacheDir, {
        bytes: [...state.values()].reduce((a, f) => a + f.size - f.bytes, 0),
        what: `downloading ${repo}`,
        then: 'pull it again (what is downloaded is kept)',
      });
    }
  };

  // The index first: it says which shards there are.
  const index = listed.find((f) => f.path === INDEX);
  if (index) await fetchOne(index);
  const plan = selectFiles(repo, listed, index ? shardsOf(repo, blobPath(folder, etagOf(index))) : null);
  // Every file of the plan, in its order (the index, fetched first, takes its place among them).
  const fetchedFirst = new Map(state);
  state.clear();
  for (const f of plan)
    state.set(
      f.path,
      fetchedFirst.get(f.path) ?? { path: f.path, size: f.size, bytes: bytesOnDisk(folder, f), state: 'waiting' },
    );
  const need = plan.reduce((a, f) => a + f.size - bytesOnDisk(folder, f), 0);
  checkFreeSpace(cacheDir, {
    bytes: need,
    what: `downloading ${repo}`,
    parts: `${plan.length} files`,
    then: 'pull it again (what is downloaded is kept)',
  });
  report(true);
  for (const f of plan) if (f.path !== INDEX) await fetchOne(f);
  // The ref moves only once the snapshot is whole: offline, refs/<revision> then always names a usable one.
  writeRef(folder, revision, commit);
  const order = new Map(plan.map((f, i) => [f.path, i]));
  done.sort((a, b) => order.get(a.path)! - order.get(b.path)!);
  return {
    repo,
    revision,
    commit,
    snapshot,
    cacheDir,
    files: done,
    totalBytes: done.reduce((a, f) => a + f.size, 0),
    fetchedBytes: fetched,
    offline: false,
    tokenFrom,
    notes: noteTokenizer(repo, done),
  };
}
