// `delta-studio serve`: the contract over HTTP (POST /api/<method>) and a WebSocket of events (/api/events), with
// the UI's static files. Every request carries the token (Authorization header or the HttpOnly cookie that
// GET /?token=… sets) and names this server in its Host; an API call from a browser page must come from this
// server's own origin and send JSON; every path a call names must lie in the workspace or a folder the operator
// allowed. No request, however malformed, can throw out of a handler: the server answers and stays up.
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { hostname, networkInterfaces } from 'node:os';
import { pipeline } from 'node:stream';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  ContractError,
  EVENT_NAMES,
  pathsOf,
  validateCall,
  type ApiError,
  type EventName,
  type Events,
  type MethodName,
} from '../contract/index.js';
import type { Service } from './service.js';
import { toContractError } from '../app/errors.js';
import { isInside } from '../files/paths.js';

export interface ServerOptions {
  service: Service;
  host?: string;
  port?: number;
  /** Default: 32 random bytes, hex. */
  token?: string;
  /** The built UI (renderer/dist). */
  staticDir?: string;
  /** Folders (besides the open workspace) that calls may name paths in. */
  allowedRoots: string[];
  /** Largest request body accepted (bytes). */
  maxBody?: number;
  /**
   * More `host:port` names the server is reached by (an SSH tunnel on another local port, a proxy): requests whose
   * Host, or whose page's Origin, names one are its own. The loopback names and `host` always are.
   */
  hosts?: string[];
}

export interface RunningServer {
  url: string;
  token: string;
  port: number;
  close(): Promise<void>;
}

const COOKIE = 'ds_token';
const STATUS: Record<ApiError['code'], number> = {
  'bad-params': 400,
  'unknown-method': 404,
  'not-found': 404,
  'path-outside': 403,
  unauthorized: 401,
  conflict: 409,
  failed: 500,
  damaged: 409,
};
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
};
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/** Every value of the cookie `name`; the others are never decoded (another local app's may hold anything). */
function cookieValues(header: string | undefined, name: string): string[] {
  const out: string[] = [];
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i < 0 || part.slice(0, i).trim() !== name) continue;
    try {
      out.push(decodeURIComponent(part.slice(i + 1).trim()));
    } catch {
      // Not valid percent-encoding: not our cookie's value, as if it were absent.
    }
  }
  return out;
}

/** The request's URL, or null when it cannot be parsed (`//[`, `http://[::1`). */
function requestUrl(req: IncomingMessage): URL | null {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch {
    return null;
  }
}

const WILDCARD_HOSTS = ['0.0.0.0', '::', ''];

/** The Host values (lowercase `name:port`) of this server: loopback names, the listen address, the operator's names. */
function ownHosts(host: string, port: number, extra: string[]): string[] {
  const bracket = (h: string): string => (h.includes(':') && !h.startsWith('[') ? `[${h}]` : h);
  const names = ['127.0.0.1', 'localhost', '[::1]'];
  if (WILDCARD_HOSTS.includes(host)) {
    names.push(hostname());
    for (const addrs of Object.values(networkInterfaces())) for (const a of addrs ?? []) names.push(bracket(a.address));
  } else names.push(bracket(host));
  const out = names.map((n) => `${n.toLowerCase()}:${port}`);
  // A browser leaves the default port out of Host.
  if (port === 80) out.push(...names.map((n) => n.toLowerCase()));
  return [...new Set([...out, ...extra.map((h) => h.toLowerCase())])];
}

/** A header value short enough to quote in an error message. */
const quote = (v: string): string => JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);

/** Why a request is refused before it reaches the API: its status and a message saying what and why. */
interface Refusal {
  status: number;
  code: ApiError['code'];
  message: string;
}

/** A path as the file system resolves it (symlinks followed); for a path not there yet, its nearest existing parent's. */
function realish(p: string): string {
  let cur = resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(cur), ...rest.reverse());
    } catch {
      const up = dirname(cur);
      if (up === cur) return resolve(p);
      rest.push(cur.slice(up.length).replace(/^[\\/]+/, ''));
      cur = up;
    }
  }
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const { service } = opts;
  const token = opts.token ?? randomBytes(32).toString('hex');
  const tokenBytes = Buffer.from(token);
  const maxBody = opts.maxBody ?? 1024 * 1024;
  const roots = opts.allowedRoots.map(realish);
  const staticRoot = opts.staticDir && existsSync(opts.staticDir) ? realpathSync(opts.staticDir) : undefined;

  const tokenOk = (t: string | undefined): boolean => {
    if (!t) return false;
    const b = Buffer.from(t);
    return b.length === tokenBytes.length && timingSafeEqual(b, tokenBytes);
  };
  const authorized = (req: IncomingMessage, url: URL, allowQuery: boolean): boolean => {
    const h = req.headers.authorization;
    if (h?.startsWith('Bearer ') && tokenOk(h.slice(7).trim())) return true;
    if (cookieValues(req.headers.cookie, COOKIE).some(tokenOk)) return true;
    return allowQuery && tokenOk(url.searchParams.get('token') ?? undefined);
  };
  const unauthorized: Refusal = {
    status: 401,
    code: 'unauthorized',
    message:
      'this server needs its token: open the URL delta-studio serve printed (…/?token=…), or send Authorization: Bearer <token>',
  };

  // Known once the server listens (port 0 picks one).
  let hosts = new Set<string>();
  let printed = '';
  /** DNS rebinding: a page of a name the attacker controls, resolved to 127.0.0.1, must not reach us as that name. */
  const hostRefusal = (req: IncomingMessage): Refusal | null => {
    const h = (req.headers.host ?? '').toLowerCase();
    if (hosts.has(h)) return null;
    return {
      status: 421,
      code: 'unauthorized',
      message: `this server answers to Host ${[...hosts].slice(0, 3).join(', ')}${hosts.size > 3 ? ', …' : ''}, not ${quote(h)} (a page under another name could reach it by DNS rebinding): open ${printed}; an SSH tunnel must forward the same port`,
    };
  };
  /** A browser page of another origin — another local port counts, and SameSite does not stop it — may not call us. */
  const originRefusal = (req: IncomingMessage): Refusal | null => {
    const origin = req.headers.origin;
    if (origin === undefined) return null; // not a browser page: curl, scripts, the CLI
    try {
      const u = new URL(origin);
      if ((u.protocol === 'http:' || u.protocol === 'https:') && u.origin === origin && hosts.has(u.host)) return null;
    } catch {
      // not a URL: refused below
    }
    return {
      status: 403,
      code: 'unauthorized',
      message: `refused a call from the page at Origin ${quote(origin)}: only this server's own pages (${printed}) may use the API with the browser's cookie; an API client sends Authorization: Bearer <token> and no Origin`,
    };
  };

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const data = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...headers,
    });
    res.end(data);
  };
  const sendError = (res: ServerResponse, e: unknown): void => {
    const c = toContractError(e);
    send(res, STATUS[c.error.code] ?? 500, { error: c.error });
  };
  const refuse = (res: ServerResponse, r: Refusal): void =>
    send(res, r.status, { error: { code: r.code, message: r.message } });
  /** A bug of ours, not of the request: answer 500 (or drop a half-sent answer), say so, and keep serving. */
  const internalError = (res: ServerResponse, e: unknown): void => {
    console.error('delta-studio serve: internal error while answering a request:', e);
    if (res.headersSent) return void res.destroy();
    const why = e instanceof Error ? e.message : String(e);
    send(res, 500, { error: { code: 'failed', message: `internal error (${why}); the server is still running` } });
  };

  const readBody = (req: IncomingMessage): Promise<unknown> =>
    new Promise((ok, fail) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBody) {
          over = true;
          chunks.length = 0;
          return;
        }
        if (!over) chunks.push(c);
      });
      req.on('end', () => {
        if (over) return fail(new ContractError({ code: 'bad-params', message: `request body over ${maxBody} bytes` }));
        const text = Buffer.concat(chunks).toString('utf8');
        if (text.trim() === '') return ok({});
        try {
          ok(JSON.parse(text));
        } catch (e) {
          fail(new ContractError({ code: 'bad-params', message: `the body is not JSON: ${(e as Error).message}` }));
        }
      });
      req.on('error', fail);
    });

  /** Every path a call names must lie (after symlinks) in the workspace or an allowed folder. */
  const checkPaths = (method: MethodName, params: unknown): void => {
    const allowed = [...roots, ...(service.workspaceDir ? [realish(service.workspaceDir)] : [])];
    for (const p of pathsOf(method, params)) {
      const real = realish(p);
      if (!allowed.some((r) => isInside(r, real))) {
        throw new ContractError({
          code: 'path-outside',
          message: `${p} is outside the folders this server may use (the workspace${roots.length ? ` and ${roots.join(', ')}` : ''}); restart delta-studio serve with --allow <folder> to allow it`,
        });
      }
    }
  };

  const api = async (req: IncomingMessage, res: ServerResponse, name: string): Promise<void> => {
    const foreign = originRefusal(req);
    if (foreign) return refuse(res, foreign);
    if (req.method !== 'POST')
      return send(res, 405, { error: { code: 'bad-params', message: `use POST /api/${name}` } }, { allow: 'POST' });
    // Only JSON: a page of another origin cannot send it without a CORS preflight, which this server never grants.
    const ct = req.headers['content-type'];
    if (ct?.split(';')[0].trim().toLowerCase() !== 'application/json')
      return refuse(res, {
        status: 415,
        code: 'bad-params',
        message: `send Content-Type: application/json (got ${ct === undefined ? 'none' : quote(ct)}): a form or a plain request from another page must not reach the API`,
      });
    const body = await readBody(req);
    const { method, params } = validateCall(name, body);
    checkPaths(method, params);
    const handler = service.handlers[method] as (p: unknown) => Promise<unknown>;
    send(res, 200, { result: (await handler(params)) ?? null });
  };

  const serveStatic = (req: IncomingMessage, res: ServerResponse, url: URL): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(res, 405, { error: { code: 'bad-params', message: 'only GET here' } });
    const headers = {
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
    };
    if (!staticRoot) {
      res.writeHead(200, { ...headers, 'content-type': 'text/plain; charset=utf-8' });
      res.end(
        'Delta Studio engine is running; the UI was not built (npm run build:ui). The API is at /api/<method>.\n',
      );
      return;
    }
    let rel: string;
    try {
      rel = decodeURIComponent(url.pathname);
    } catch {
      return send(res, 400, { error: { code: 'bad-params', message: 'bad URL encoding' } });
    }
    let file = resolve(staticRoot, `.${rel.startsWith('/') ? rel : `/${rel}`}`);
    if (rel.includes('\0') || !isInside(staticRoot, file))
      return send(res, 403, { error: { code: 'path-outside', message: `${quote(rel)} is not a file of the UI` } });
    // Client routes (no extension) get index.html.
    if (!existsSync(file) || statSync(file).isDirectory()) {
      if (extname(rel) && !existsSync(file))
        return send(res, 404, { error: { code: 'not-found', message: `${rel} not found` } });
      file = join(staticRoot, 'index.html');
      if (!existsSync(file)) return send(res, 404, { error: { code: 'not-found', message: 'index.html not found' } });
    }
    // A symlink inside the UI folder must not lead out of it.
    if (!isInside(staticRoot, realpathSync(file)))
      return send(res, 403, { error: { code: 'path-outside', message: `${quote(rel)} leads out of the UI folder` } });
    res.writeHead(200, {
      ...headers,
      'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'cache-control': file.endsWith(`${sep}index.html`) ? 'no-cache' : 'public, max-age=3600',
    });
    if (req.method === 'HEAD') return void res.end();
    // A read error (the file went away) ends this answer, never the server.
    pipeline(createReadStream(file), res, (e) => {
      if (e) res.destroy();
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = requestUrl(req);
    if (!url)
      return send(res, 400, { error: { code: 'bad-params', message: `cannot parse the URL ${quote(req.url ?? '')}` } });
    const misdirected = hostRefusal(req);
    if (misdirected) return refuse(res, misdirected);
    // Opening the printed URL: trade the token for a cookie, then drop it from the address bar.
    if (req.method === 'GET' && url.searchParams.has('token') && !url.pathname.startsWith('/api/')) {
      if (!tokenOk(url.searchParams.get('token') ?? undefined))
        return send(res, 401, {
          error: { code: 'unauthorized', message: 'wrong token: use the URL delta-studio serve printed' },
        });
      res.writeHead(302, {
        location: '/',
        'set-cookie': `${COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
        'cache-control': 'no-store',
      });
      return void res.end();
    }
    if (!authorized(req, url, false)) return refuse(res, unauthorized);
    if (url.pathname.startsWith('/api/')) {
      try {
        await api(req, res, url.pathname.slice(5));
      } catch (e) {
        if (!res.headersSent) sendError(res, e);
        else res.destroy();
      }
      return;
    }
    serveStatic(req, res, url);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => internalError(res, e));
  });

  // ——— events ———
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  const clients = new Set<WebSocket>();
  const listeners = EVENT_NAMES.map((event) => {
    const fn = (data: Events[EventName]): void => {
      const msg = JSON.stringify({ event, data });
      for (const c of clients) if (c.readyState === c.OPEN) c.send(msg);
    };
    service.events.on(event, fn);
    return { event, fn };
  });
  /** An answer on a raw socket (an upgrade or CONNECT), then close. */
  const refuseSocket = (socket: Duplex, r: Refusal): void => {
    const body = JSON.stringify({ error: { code: r.code, message: r.message } });
    socket.end(
      `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? ''}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  };
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = requestUrl(req);
    if (!url) return refuseSocket(socket, { status: 400, code: 'bad-params', message: 'cannot parse the URL' });
    const misdirected = hostRefusal(req);
    if (misdirected) return refuseSocket(socket, misdirected);
    if (url.pathname !== '/api/events')
      return refuseSocket(socket, { status: 404, code: 'not-found', message: 'the event socket is /api/events' });
    if (!authorized(req, url, true)) return refuseSocket(socket, unauthorized);
    // A page of another site must not read the events even if the browser sends our cookie.
    const foreign = originRefusal(req);
    if (foreign) return refuseSocket(socket, foreign);
    wss.handleUpgrade(req, socket, head, (ws) => {
      clients.add(ws);
      ws.on('close', () => clients.delete(ws));
      ws.on('error', () => clients.delete(ws));
    });
  };
  // Node takes its own error listener off a socket it hands over: without one, a client's reset ends the process.
  const guard = (socket: Duplex): void => void socket.on('error', () => socket.destroy());
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    guard(socket);
    try {
      upgrade(req, socket, head);
    } catch (e) {
      console.error('delta-studio serve: internal error during a WebSocket upgrade:', e);
      socket.destroy();
    }
  });
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    guard(socket);
    refuseSocket(socket, {
      status: 405,
      code: 'bad-params',
      message: 'this server is no proxy: CONNECT is not served',
    });
  });

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => ok());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host ?? '127.0.0.1';
  const shown = WILDCARD_HOSTS.includes(host) ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  hosts = new Set(ownHosts(host, port, opts.hosts ?? []));
  printed = `http://${shown}:${port}/`;
  return {
    url: printed,
    token,
    port,
    async close() {
      for (const { event, fn } of listeners) service.events.off(event, fn);
      for (const c of clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}
