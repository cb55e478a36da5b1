// `delta-studio serve`: the contract over HTTP (POST /api/<method>) and a WebSocket of events (/api/events), with
// the UI's static files. Every request carries the token (Authorization header or the HttpOnly cookie that
// GET /?token=… sets); every path a call names must lie in the workspace or a folder the operator allowed.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
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

function cookies(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = decodeURIComponent(part.slice(i + 1).trim());
  }
  return out;
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
    if (tokenOk(cookies(req)[COOKIE])) return true;
    return allowQuery && tokenOk(url.searchParams.get('token') ?? undefined);
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
    if (req.method !== 'POST')
      return send(res, 405, { error: { code: 'bad-params', message: `use POST /api/${name}` } }, { allow: 'POST' });
    const ct = req.headers['content-type'] ?? '';
    // Only JSON: a cross-site form cannot send it without a preflight.
    if (ct && !ct.startsWith('application/json'))
      throw new ContractError({ code: 'bad-params', message: `content-type must be application/json (got ${ct})` });
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
        'Delta Studio engine is running; the UI was not built (npm run build:renderer). The API is at /api/<method>.\n',
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
      return send(res, 403, { error: { code: 'path-outside', message: 'no' } });
    // Client routes (no extension) get index.html.
    if (!existsSync(file) || statSync(file).isDirectory()) {
      if (extname(rel) && !existsSync(file))
        return send(res, 404, { error: { code: 'not-found', message: `${rel} not found` } });
      file = join(staticRoot, 'index.html');
      if (!existsSync(file)) return send(res, 404, { error: { code: 'not-found', message: 'index.html not found' } });
    }
    // A symlink inside the UI folder must not lead out of it.
    if (!isInside(staticRoot, realpathSync(file)))
      return send(res, 403, { error: { code: 'path-outside', message: 'no' } });
    res.writeHead(200, {
      ...headers,
      'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'cache-control': file.endsWith(`${sep}index.html`) ? 'no-cache' : 'public, max-age=3600',
    });
    if (req.method === 'HEAD') return void res.end();
    createReadStream(file).pipe(res);
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
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
    if (!authorized(req, url, false)) {
      return send(res, 401, {
        error: {
          code: 'unauthorized',
          message:
            'this server needs its token: open the URL delta-studio serve printed (…/?token=…), or send Authorization: Bearer <token>',
        },
      });
    }
    if (url.pathname.startsWith('/api/')) {
      api(req, res, url.pathname.slice(5)).catch((e: unknown) => {
        if (!res.headersSent) sendError(res, e);
        else res.destroy();
      });
      return;
    }
    serveStatic(req, res, url);
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
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const refuse = (status: number, why: string): void => {
      socket.end(`HTTP/1.1 ${status} ${why}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (url.pathname !== '/api/events') return refuse(404, 'Not Found');
    if (!authorized(req, url, true)) return refuse(401, 'Unauthorized');
    // A page of another site must not read the events even if the browser sends our cookie.
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host}` && origin !== `https://${req.headers.host}`)
      return refuse(403, 'Forbidden');
    wss.handleUpgrade(req, socket, head, (ws) => {
      clients.add(ws);
      ws.on('close', () => clients.delete(ws));
      ws.on('error', () => clients.delete(ws));
    });
  });

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => ok());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host ?? '127.0.0.1';
  const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}/`,
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
