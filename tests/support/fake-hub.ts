// A Hugging Face Hub in the test: two local servers that answer as huggingface.co and its CDN do, for the requests
// @huggingface/hub and our transfer make. The Hub: model info (/api/models/<repo>/revision/<rev>, with `sha` and
// `gated`), the file tree (/api/models/<repo>/tree/<rev>, LFS entries with their sha256), and resolve
// (/<repo>/resolve/<rev>/<path>): small files served with ETag = git oid and X-Repo-Commit, large (LFS) files
// redirected with 302 to the CDN with X-Linked-Etag = sha256, X-Linked-Size and X-Repo-Commit, as the Hub does;
// refusals with X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) and the Hub's 401/403/404
// rules for unknown, private and gated repositories. The CDN (another origin) serves blobs with Range (206,
// Content-Range), and can drop the connection after N bytes, corrupt a blob, or trickle bytes slowly. Every request
// is logged: server, path, Range, whether it carried a token, status and body bytes sent.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  range: string | null;
  auth: string | null;
  status: number;
  /** Body bytes sent. */
  bytes: number;
}

interface StoredFile {
  path: string;
  data: Buffer;
  lfs: boolean;
  /** git oid of what git stores: the file, or its LFS pointer. */
  oid: string;
  sha256: string;
  pointerSize: number;
}

interface FakeRepo {
  id: string;
  gated: boolean;
  private: boolean;
  commits: Map<string, StoredFile[]>;
  refs: Map<string, string>;
}

const gitOid = (data: Buffer): string => createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Files stored with LFS on the Hub: weights and pickles (as a repository's .gitattributes says). */
const isLfs = (path: string): boolean => /\.(safetensors|bin|pt|pth|ckpt|msgpack|h5|onnx)$/.test(path);

export class FakeHub {
  readonly requests: LoggedRequest[] = [];
  /** Token → repositories it can read ('*': all). */
  readonly tokens = new Map<string, string[] | '*'>();
  private readonly repos = new Map<string, FakeRepo>();
  /** sha256 → bytes after which the next CDN answers for that blob drop the connection, and how many times. */
  private readonly drops = new Map<string, { bytes: number; times: number }>();
  private readonly corrupt = new Set<string>();
  /** Repository path → a status the next resolves of it answer, and how many times. */
  private readonly failures = new Map<string, { status: number; times: number }>();
  /** The CDN sends blobs in chunks of this many bytes, this many ms apart (default: at once). */
  trickle: { chunk: number; delayMs: number } | null = null;
  private hubServer!: Server;
  private cdnServer!: Server;
  url = '';
  cdnUrl = '';

  async start(): Promise<this> {
    this.hubServer = createServer((req, res) => this.answer('hub', req, res));
    this.cdnServer = createServer((req, res) => this.answer('cdn', req, res));
    const listen = (s: Server): Promise<string> =>
      new Promise((resolve) =>
        s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)),
      );
    this.url = await listen(this.hubServer);
    this.cdnUrl = await listen(this.cdnServer);
    return this;
  }

  async close(): Promise<void> {
    for (const s of [this.hubServer, this.cdnServer]) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }

  /** A new commit of `id` holding `files`, which `branch` (main) then points at; returns the commit. */
  commit(
    id: string,
    files: Record<string, Buffer | string>,
    opts: { gated?: boolean; private?: boolean; branch?: string } = {},
  ): string {
    let repo = this.repos.get(id);
    if (!repo) {
      repo = { id, gated: !!opts.gated, private: !!opts.private, commits: new Map(), refs: new Map() };
      this.repos.set(id, repo);
    }
    const stored = Object.entries(files).map(([path, content]): StoredFile => {
      const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
      const lfs = isLfs(path);
      const pointer = Buffer.from(
        `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(data)}\nsize ${data.length}\n`,
      );
      return {
        path,
        data,
        lfs,
        oid: gitOid(lfs ? pointer : data),
        sha256: sha256(data),
        pointerSize: pointer.length,
      };
    });
    const commit = createHash('sha1')
      .update(`${id}:${repo.commits.size}:${stored.map((f) => `${f.path}=${f.oid}`).join(',')}`)
      .digest('hex');
    repo.commits.set(commit, stored);
    repo.refs.set(opts.branch ?? 'main', commit);
    return commit;
  }

  /** The next `times` CDN answers for the blob of `path` drop the connection after `bytes` bytes each. */
  dropAfter(id: string, path: string, bytes: number, times = 1): void {
    this.drops.set(this.file(id, path).sha256, { bytes, times });
  }

  /** The next `times` resolves of `path` answer `status` (a Hub having trouble: 500, 503). */
  failNext(path: string, status: number, times = 1): void {
    this.failures.set(path, { status, times });
  }

  /** The CDN serves the blob of `path` with one byte changed (a bad disk, a bad proxy). */
  corruptBlob(id: string, path: string): void {
    this.corrupt.add(this.file(id, path).sha256);
  }

  file(id: string, path: string): StoredFile {
    const repo = this.repos.get(id)!;
    const f = repo.commits.get(repo.refs.get('main')!)!.find((x) => x.path === path);
    if (!f) throw new Error(`no ${path} in ${id}`);
    return f;
  }

  /** Requests made since `from` (an index into `requests`). */
  since(from: number): LoggedRequest[] {
    return this.requests.slice(from);
  }

  private answer(server: 'hub' | 'cdn', req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const entry: LoggedRequest = {
      server,
      method: req.method ?? 'GET',
      path: decodeURIComponent(url.pathname),
      range: req.headers.range ?? null,
      auth: req.headers.authorization ?? null,
      status: 0,
      bytes: 0,
    };
    this.requests.push(entry);
    const send = (status: number, headers: Record<string, string | number>, body?: Buffer | string): void => {
      entry.status = status;
      res.writeHead(status, headers);
      if (body !== undefined && req.method !== 'HEAD') {
        entry.bytes = Buffer.byteLength(body);
        res.end(body);
      } else res.end();
    };
    try {
      if (server === 'cdn') this.serveBlob(url, req, res, entry, send);
      else this.serveHub(url, req, send);
    } catch (e) {
      send(500, { 'content-type': 'text/plain' }, String(e));
    }
  }

  private refuse(
    send: (s: number, h: Record<string, string>, b?: string) => void,
    status: number,
    code: string,
    message: string,
    commit?: string,
  ): void {
    send(
      status,
      {
        'content-type': 'application/json',
        'x-error-code': code,
        'x-error-message': message,
        ...(commit ? { 'x-repo-commit': commit } : {}),
      },
      JSON.stringify({ error: message }),
    );
  }

  /** Who is asking: 'none', 'invalid', or the repositories the token may read. */
  private who(authorization: string | undefined): 'none' | 'invalid' | string[] | '*' {
    if (!authorization) return 'none';
    const t = /^Bearer (.+)$/.exec(authorization)?.[1];
    return (t && this.tokens.get(t)) || 'invalid';
  }

  private serveHub(
    url: URL,
    req: IncomingMessage,
    send: (s: number, h: Record<string, string | number>, b?: Buffer | string) => void,
  ): void {
    const path = decodeURIComponent(url.pathname);
    const api = /^\/api\/models\/(.+?)\/(revision|tree)\/([^/]+)(?:\/(.*))?$/.exec(path);
    const resolve = api ? null : /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const [id, revision] = api ? [api[1], api[3]] : resolve ? [resolve[1], resolve[2]] : [null, null];
    if (!id || !revision) return send(404, { 'content-type': 'text/plain' }, 'Not Found');
    const who = this.who(req.headers.authorization);
    if (who === 'invalid')
      return this.refuse(send, 401, 'InvalidCredentials', 'Invalid credentials in Authorization header');
    const repo = this.repos.get(id);
    const mayRead = (r: FakeRepo): boolean => who === '*' || (Array.isArray(who) && who.includes(r.id));
    // Unknown and private-without-access look the same: 401 without a token, 404 with one.
    if (!repo || (repo.private && !mayRead(repo)))
      return this.refuse(send, who === 'none' ? 401 : 404, 'RepoNotFound', 'Repository not found');
    const commit = repo.commits.has(revision) ? revision : repo.refs.get(revision);
    if (!commit) return this.refuse(send, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
    const files = repo.commits.get(commit)!;
    if (api?.[2] === 'revision')
      return send(
        200,
        { 'content-type': 'application/json' },
        JSON.stringify({
          _id: `id-${repo.id}`,
          id: repo.id,
          sha: commit,
          private: repo.private,
          gated: repo.gated ? 'manual' : false,
          downloads: 0,
          likes: 0,
          lastModified: '2026-01-01T00:00:00.000Z',
          pipeline_tag: 'text-generation',
        }),
      );
    if (api?.[2] === 'tree') {
      const recursive = url.searchParams.get('recursive') === 'true';
      const entries = new Map<string, unknown>();
      for (const f of files) {
        const slash = f.path.indexOf('/');
        if (slash >= 0 && !recursive) {
          const dir = f.path.slice(0, slash);
          entries.set(dir, { type: 'directory', oid: gitOid(Buffer.from(dir)), size: 0, path: dir });
          continue;
        }
        entries.set(f.path, {
          type: 'file',
          oid: f.oid,
          size: f.data.length,
          path: f.path,
          ...(f.lfs ? { lfs: { oid: f.sha256, size: f.data.length, pointerSize: f.pointerSize } } : {}),
        });
      }
      return send(200, { 'content-type': 'application/json' }, JSON.stringify([...entries.values()]));
    }
    const failure = this.failures.get(resolve![3]);
    if (failure) {
      if (--failure.times <= 0) this.failures.delete(resolve![3]);
      return send(failure.status, { 'content-type': 'text/plain' }, 'Service Unavailable');
    }
    const file = files.find((f) => f.path === resolve![3]);
    if (!file) return this.refuse(send, 404, 'EntryNotFound', `${resolve![3]} does not exist`, commit);
    if (repo.gated && !mayRead(repo))
      return this.refuse(
        send,
        who === 'none' ? 401 : 403,
        'GatedRepo',
        who === 'none'
          ? `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.`
          : `Access to model ${repo.id} is restricted and you are not in the authorized list. Visit https://huggingface.co/${repo.id} to ask for access.`,
      );
    if (file.lfs)
      return send(302, {
        location: `${this.cdnUrl}/blobs/${file.sha256}?X-Amz-Signature=fake`,
        'x-repo-commit': commit,
        'x-linked-etag': `"${file.sha256}"`,
        'x-linked-size': file.data.length,
        etag: `"${file.oid}"`,
        'content-length': 0,
      });
    this.ranged(req, file.data, { etag: `"${file.oid}"`, 'x-repo-commit': commit }, send);
  }

  /** A body with Range: 206 and Content-Range for `bytes=a-` / `bytes=a-b`, else 200. */
  private ranged(
    req: IncomingMessage,
    data: Buffer,
    headers: Record<string, string>,
    send: (s: number, h: Record<string, string | number>, b?: Buffer) => void,
  ): void {
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const base = { 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', ...headers };
    if (!m) return send(200, { ...base, 'content-length': data.length }, data);
    const start = Number(m[1]);
    const end = m[2] ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
    if (start >= data.length)
      return send(416, { ...base, 'content-range': `bytes */${data.length}`, 'content-length': 0 });
    const body = data.subarray(start, end + 1);
    send(
      206,
      { ...base, 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-length': body.length },
      body,
    );
  }

  private serveBlob(
    url: URL,
    req: IncomingMessage,
    res: ServerResponse,
    entry: LoggedRequest,
    send: (s: number, h: Record<string, string | number>, b?: Buffer) => void,
  ): void {
    const sha = /^\/blobs\/([0-9a-f]{64})$/.exec(url.pathname)?.[1];
    const file = sha
      ? [...this.repos.values()].flatMap((r) => [...r.commits.values()].flat()).find((f) => f.sha256 === sha && f.lfs)
      : undefined;
    if (!file) return send(404, { 'content-type': 'text/plain' }, Buffer.from('NoSuchKey'));
    let data = file.data;
    if (this.corrupt.has(file.sha256)) {
      data = Buffer.from(data);
      data[data.length >> 1] ^= 0xff;
    }
    // A CDN's ETag is its own (S3: an md5), not the Hub's sha256.
    const headers = { etag: `"${createHash('md5').update(data).digest('hex')}"` };
    const plan = this.drops.get(file.sha256);
    const drop = plan?.bytes;
    if (drop === undefined && !this.trickle) return this.ranged(req, data, headers, send);
    if (plan && --plan.times <= 0) this.drops.delete(file.sha256);
    // Send the head and the first bytes, then (when dropping) end the socket mid-body.
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const body = data.subarray(start);
    entry.status = m ? 206 : 200;
    res.writeHead(entry.status, {
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      'content-length': body.length,
      ...(m ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
      ...headers,
    });
    const limit = drop === undefined ? body.length : Math.min(drop, body.length);
    const step = this.trickle?.chunk ?? limit;
    const pump = (at: number): void => {
      if (at >= limit) {
        if (drop === undefined) res.end();
        else res.socket?.end(); // the connection is lost mid-file
        return;
      }
      const chunk = body.subarray(at, Math.min(limit, at + step));
      entry.bytes += chunk.length;
      res.write(chunk, () => setTimeout(() => pump(at + chunk.length), this.trickle?.delayMs ?? 0));
    };
    pump(0);
  }
}

/**
 * The environment of a delta-studio process that talks to `hub` and caches in `hfHome`: the tester's own Hugging Face
 * token, cache and offline settings removed, `extra` added.
 */
export function hubEnv(hub: FakeHub, hfHome: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HF_HOME: hfHome, HF_ENDPOINT: hub.url, ...extra };
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HUB_OFFLINE'])
    if (!(k in extra)) delete env[k];
  return env;
}

/** Publishes the files of the folder `dir` (not its subfolders) as `id`'s next commit. */
export function commitFolder(hub: FakeHub, id: string, dir: string): void {
  hub.commit(
    id,
    Object.fromEntries(
      readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => [e.name, readFileSync(join(dir, e.name))]),
    ),
  );
}
