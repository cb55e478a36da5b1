// `delta-studio serve` against hostile input: malformed cookies, headers, methods, paths and bodies; API calls from
// pages of other local ports or other host names; run-id "prefixes" that are SQL patterns; control characters in
// paths and names. Every refusal is a 4xx that says why, and the server stays up.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { ContractError, METHODS, pathsOf, validateCall, type MethodName } from '../native/contract/index.js';
import { createService, type Service } from '../native/api/service.js';
import { startServer, type RunningServer } from '../native/api/server.js';
import { Workspace, WorkspaceError } from '../native/store/workspace.js';
import { Rng } from '../native/rng.js';
import { openSocket } from './support/event-socket.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const RUN = '20250101T000000-abc123';
let tmp: string;
let service: Service;
let server: RunningServer;
let port: number;
let cookie: string;

// An error thrown out of the server's handlers ends a real `serve` process; here node:test would only note it.
const crashes: string[] = [];
const onCrash = (e: Error): void => void crashes.push(String(e));

interface Answer {
  status: number;
  body: string;
}

/** One request through node:http (which lets a test set Host and leave Content-Type out). */
function send(
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: opts.method ?? 'POST', headers: opts.headers ?? {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${path} within 10 s`)));
    req.end(opts.body ?? (opts.method && opts.method !== 'POST' ? undefined : '{}'));
  });
}
const bearer = (): Record<string, string> => ({ authorization: `Bearer ${server.token}` });
const json = { 'content-type': 'application/json' };

/** Bytes as they are, on a fresh connection: the status of the answer, -1 if closed without one, 0 on a timeout. */
function raw(data: string | Buffer, ms = 10_000): Promise<number> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    let settled = false;
    const done = (status: number): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(status);
    };
    const timer = setTimeout(() => done(0), ms);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      if (m) done(Number(m[1]));
    });
    s.on('error', () => done(-1));
    s.on('close', () => done(-1));
    s.write(data);
  });
}

/** A raw HTTP/1.1 request; Host is ours unless a header names another. */
function rawRequest(method: string, target: string, headers: [string, string][] = [], body: string | Buffer = '') {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const has = (name: string): boolean => headers.some(([k]) => k.toLowerCase() === name);
  const all: [string, string][] = [
    ...(has('host') ? [] : ([['Host', `127.0.0.1:${port}`]] as [string, string][])),
    ...headers,
    ...(has('content-length') || has('transfer-encoding')
      ? []
      : ([['Content-Length', String(bytes.length)]] as [string, string][])),
    ['Connection', 'close'],
  ];
  const head = `${method} ${target} HTTP/1.1\r\n${all.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), bytes]);
}

before(async () => {
  process.on('uncaughtException', onCrash);
  tmp = mkdtempSync(join(tmpdir(), 'ds-serve-hard-'));
  const dist = join(tmp, 'dist');
  mkdirSync(dist);
  writeFileSync(join(dist, 'index.html'), '<!doctype html><title>ds</title>');
  service = createService({ stateDir: join(tmp, 'state'), transport: 'http' });
  server = await startServer({ service, port: 0, staticDir: dist, allowedRoots: [join(tmp, 'allowed')] });
  port = server.port;
  mkdirSync(join(tmp, 'allowed'));
  await service.handlers['workspace.create']({ path: join(tmp, 'allowed', 'ws') });
  // One run for the lookups, recorded straight in the store (no training needed).
  const ws = Workspace.open(join(tmp, 'allowed', 'ws'), { recover: false });
  ws.createRun({ id: RUN, config: {}, method: 'lora', dir: `runs/${RUN}` });
  ws.close();
  const r = await fetch(`${server.url}?token=${server.token}`, { redirect: 'manual' });
  cookie = (r.headers.get('set-cookie') ?? '').split(';')[0];
  assert.match(cookie, /^ds_token=/);
});

afterEach(() => {
  const seen = crashes.splice(0);
  assert.deepEqual([...new Set(seen)], [], 'errors thrown out of the server (each would end delta-studio serve)');
});

after(async () => {
  process.off('uncaughtException', onCrash);
  await server?.close();
  await service?.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('a cookie that is not valid percent-encoding is ignored, not fatal, on HTTP and on the event socket', async () => {
  const events = `ws://127.0.0.1:${port}/api/events`;
  for (const other of ['a=%', 'x=50%off', 'ds_token=%', 'ds_token=%E0%A4%A']) {
    const alone = await send('/api/app.info', { headers: { ...json, cookie: other } });
    assert.equal(alone.status, 401, other);
    assert.equal((await send('/api/app.info', { headers: { ...json, ...bearer(), cookie: other } })).status, 200);
    // Another local app's cookie next to ours: ours still counts, in either order.
    for (const both of [`${other}; ${cookie}`, `${cookie}; ${other}`])
      assert.equal((await send('/api/app.info', { headers: { ...json, cookie: both } })).status, 200, both);
    assert.equal((await send('/', { method: 'GET', headers: { cookie: other } })).status, 401);
    assert.equal(await openSocket(events, { headers: { cookie: other } }), 401);
    const ws = await openSocket(events, { headers: { cookie: `${other}; ${cookie}` } });
    assert.ok(ws instanceof WebSocket, `${other}: ${String(ws)}`);
    ws.close();
  }
});

test('a client that resets its connection in the middle of an upgrade does not take the server down', async () => {
  for (let i = 0; i < 30; i++) {
    await new Promise<void>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.write(
          rawRequest('GET', i % 2 ? '/api/events' : '/elsewhere', [
            ['Upgrade', 'websocket'],
            ['Connection', 'Upgrade'],
            ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
            ['Sec-WebSocket-Version', '13'],
          ]),
        );
        s.resetAndDestroy();
        resolve();
      });
      s.on('error', () => resolve());
    });
  }
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await send('/api/app.info', { headers: { ...json, ...bearer() } })).status, 200);
});

test('an API call needs Content-Type application/json: a form or a plain POST with the cookie is refused', async () => {
  const withCookie = (ct?: string) =>
    send('/api/app.info', { headers: { cookie, ...(ct ? { 'content-type': ct } : {}) } });
  for (const ct of [
    undefined,
    'text/plain',
    'application/jsonfoo',
    'application/json-patch+json',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/json, text/plain',
  ]) {
    const r = await withCookie(ct);
    assert.equal(r.status, 415, `${ct}: ${r.body}`);
    assert.match(r.body, /Content-Type.*application\/json/i, r.body);
  }
  for (const ct of ['application/json', 'application/json; charset=utf-8', 'Application/JSON ; charset=UTF-8'])
    assert.equal((await withCookie(ct)).status, 200, ct);
});

test('API calls and the event socket from another origin or another host name are refused, saying why', async () => {
  const call = (headers: Record<string, string>) => send('/api/app.info', { headers: { ...json, cookie, ...headers } });
  for (const origin of [
    `http://127.0.0.1:${port + 1}`,
    `http://localhost:${port + 1}`,
    'http://evil.example',
    `http://127.0.0.1:${port}.evil.example`,
    'null',
    '',
  ]) {
    const r = await call({ origin });
    assert.equal(r.status, 403, `${origin}: ${r.body}`);
    assert.match(r.body, /Origin/, r.body);
  }
  for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`, `http://[::1]:${port}`])
    assert.equal((await call({ origin })).status, 200, origin);
  // DNS rebinding: a name of the attacker's that resolves to 127.0.0.1.
  for (const host of [
    `evil.example:${port}`,
    'evil.example',
    `127.0.0.1:${port + 1}`,
    `localhost.evil.example:${port}`,
  ]) {
    const r = await call({ host });
    assert.equal(r.status, 421, `${host}: ${r.body}`);
    assert.match(r.body, /Host/, r.body);
    assert.match(r.body, new RegExp(`127\\.0\\.0\\.1:${port}`), 'the error names the addresses that work');
    assert.equal((await send('/', { method: 'GET', headers: { cookie, host } })).status, 421, host);
  }
  for (const host of [`localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`])
    assert.equal((await call({ host })).status, 200, host);
  // An API client with the token and no Origin, as curl or a script sends it.
  assert.equal((await send('/api/app.info', { headers: { ...json, ...bearer() } })).status, 200);

  const events = `ws://127.0.0.1:${port}/api/events`;
  assert.equal(await openSocket(events, { headers: { cookie, origin: `http://127.0.0.1:${port + 1}` } }), 403);
  assert.equal(await openSocket(events, { headers: { cookie, host: `evil.example:${port}` } }), 421);
  const own = await openSocket(events, { headers: { cookie, origin: `http://127.0.0.1:${port}` } });
  assert.ok(own instanceof WebSocket, String(own));
  own.close();

  // A name the operator adds (a tunnel on another local port, a proxy) is the server's own too.
  const s2 = await startServer({ service, port: 0, allowedRoots: [], hosts: ['gpu.example:9000'] });
  try {
    const r = await fetch(`http://127.0.0.1:${s2.port}/api/app.info`, {
      method: 'POST',
      headers: { ...json, authorization: `Bearer ${s2.token}` },
      body: '{}',
    });
    assert.equal(r.status, 200);
    const viaTunnel = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: s2.port,
          path: '/api/app.info',
          method: 'POST',
          headers: {
            ...json,
            authorization: `Bearer ${s2.token}`,
            host: 'gpu.example:9000',
            origin: 'http://gpu.example:9000',
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
    assert.equal(viaTunnel, 200);
  } finally {
    await s2.close();
  }
});

test('a run id is matched by its real prefix only, never as an SQL pattern', async () => {
  const r = await send('/api/runs.get', { headers: { ...json, ...bearer() }, body: JSON.stringify({ runId: '%' }) });
  assert.equal(r.status, 400, r.body);
  assert.match(r.body, /runId/);
  const prefix = await send('/api/runs.get', {
    headers: { ...json, ...bearer() },
    body: JSON.stringify({ runId: RUN.slice(0, 10) }),
  });
  assert.equal(prefix.status, 200, prefix.body);

  const ws = Workspace.init(join(tmp, 'store-ws'));
  for (const id of ['r_1', 'rx2', 'p%3', 'pq4', 'b\\5', 'Up6'])
    ws.createRun({ id, config: {}, method: 'lora', dir: `runs/${id.replace(/\W/g, '-')}` });
  const idOf = (q: string): string | WorkspaceError => {
    try {
      return ws.getRun(q).id;
    } catch (e) {
      if (e instanceof WorkspaceError) return e;
      throw e;
    }
  };
  assert.equal(idOf('r_'), 'r_1', '"_" is a character, not any character');
  assert.equal(idOf('p%'), 'p%3', '"%" is a character, not any run of characters');
  assert.equal(idOf('b\\'), 'b\\5');
  assert.equal(idOf('rx'), 'rx2');
  assert.equal(idOf('Up'), 'Up6');
  for (const q of ['%', '_', '%%', '_%', 'r%', '\\', 'up', 'UP', ''])
    assert.equal((idOf(q) as WorkspaceError).code, 'not-found', JSON.stringify(q));
  assert.match((idOf('r') as WorkspaceError).message, /ambiguous: r_1, rx2/);
  ws.close();
});

/** Parameters that pass validation for every method that names paths, with a distinct path in each path field. */
const WITH_PATHS: Partial<Record<MethodName, Record<string, unknown>>> = {
  'workspace.create': { path: '/p/path' },
  'workspace.open': { path: '/p/path' },
  'workspace.check': { path: '/p/path' },
  'models.import': { path: '/p/path' },
  'datasets.preview': { path: '/p/path' },
  'datasets.import': { path: '/p/path', validationPath: '/p/validationPath', name: 'd', task: 'classification' },
  'plugins.export': { ref: 'x@1', format: 'peft', folder: '/p/folder', model: '/p/model', name: 'out' },
  'plugins.importPeft': { path: '/p/path', modelId: 1 },
  'plugins.showInFolder': { path: '/p/path' },
};

test('a control character in any path parameter is refused at validation, naming the parameter', async () => {
  let checked = 0;
  for (const m of Object.keys(METHODS) as MethodName[]) {
    if (!('paths' in METHODS[m])) continue;
    const sample = WITH_PATHS[m];
    assert.ok(sample, `${m} names paths: add it to WITH_PATHS`);
    const fields = Object.keys(sample).filter((k) =>
      pathsOf(m, validateCall(m, sample).params).includes(sample[k] as string),
    );
    assert.ok(fields.length > 0, m);
    for (const field of fields) {
      for (const bad of ['/p/a\0b', '/p/a\nb', '/p/\x1b[31m', '/p/\x7f']) {
        let err: unknown;
        try {
          validateCall(m, { ...sample, [field]: bad });
        } catch (e) {
          err = e;
        }
        assert.ok(
          err instanceof ContractError && err.error.code === 'bad-params',
          `${m}.${field} ${JSON.stringify(bad)}`,
        );
        assert.equal(err.error.issues?.[0].path, field);
        assert.match(err.error.message, /control character/);
        checked++;
      }
    }
  }
  assert.ok(checked >= 40, `${checked} checks`);
  // Over HTTP: a NUL in a path is a 400 that says so, not a 500 from the file system.
  const r = await send('/api/datasets.preview', {
    headers: { ...json, ...bearer() },
    body: JSON.stringify({ path: join(tmp, 'allowed', 'a\0b.csv') }),
  });
  assert.equal(r.status, 400, r.body);
  assert.match(r.body, /path.*control character/);
});

test('names, references and ids of the contract hold a sane set of characters and length', () => {
  const refused = (m: string, params: Record<string, unknown>, field: string): void => {
    let err: unknown;
    try {
      validateCall(m, params);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ContractError && err.error.code === 'bad-params', `${m} ${JSON.stringify(params)}`);
    assert.ok(
      err.error.issues?.some((i) => i.path === field),
      `${m}: ${err.error.message}`,
    );
  };
  for (const runId of ['%', 'a%', 'a b', 'a/b', '../x', 'a\0', 'x'.repeat(65), ''])
    refused('runs.get', { runId }, 'runId');
  refused('runs.compare', { runIds: ['ok', '%'] }, 'runIds.1');
  for (const ref of ['a b', 'x@', '@1', 'a@b@c', 'a\0', '../x', 'x'.repeat(201), 'x@%'])
    refused('plugins.get', { name: ref }, 'name');
  for (const ref of ['a b', 'x@', '@1', 'a\nb', 'x@1 ', 'x@%']) refused('plugins.notes', { ref, notes: '' }, 'ref');
  refused('playground.predict', { modelId: 1, plugins: ['ok@1', 'bad ref'], inputs: ['x'] }, 'plugins.1');
  for (const alias of ['a b', '1x', 'x'.repeat(65), 'a\0']) refused('plugins.alias', { ref: 'p', alias }, 'alias');
  for (const tag of ['', '   ', 'a\0b', 'a\nb', 'x'.repeat(65)])
    refused('plugins.tag', { ref: 'p', add: [tag] }, 'add.0');
  refused('models.import', { path: '/m', name: 'a\nb' }, 'name');
  refused('runs.metrics', { runId: 'r', keys: ['train/loss', 'a\0'] }, 'keys.1');
  refused('plugins.export', { ref: 'p', format: 'peft', name: 'a\0b' }, 'name');
  refused('plugins.importPeft', { path: '/a', modelId: 1, labels: ['ok', 'a\0'] }, 'labels.1');
  // What real ids, refs and names look like passes.
  for (const [m, p] of [
    ['runs.get', { runId: RUN }],
    ['runs.get', { runId: '2025' }],
    ['runs.get', { runId: 'dead-run' }],
    ['plugins.get', { name: 'reviews-lora' }],
    ['plugins.get', { name: 'été.v2_x' }],
    ['plugins.notes', { ref: 'reviews-lora@3', notes: 'line one\nline two\ttab' }],
    ['plugins.notes', { ref: 'reviews-lora@best', notes: '' }],
    ['plugins.notes', { ref: 'reviews-lora@v2', notes: '' }],
    ['plugins.alias', { ref: 'p@1', alias: 'prod_2-b' }],
    ['plugins.tag', { ref: 'p', add: ['ready for review', 'v1.2'] }],
    ['models.import', { path: '/m', name: 'BERT base (uncased), my copy' }],
    ['playground.predict', { modelId: 1, plugins: ['a@1'], inputs: ['a\ttab\nand newline'] }],
  ] as const)
    validateCall(m, p);
});

test('every `npm run <script>` the engine tells a user to run exists in package.json', () => {
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> })
    .scripts;
  const named: { file: string; script: string }[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts'))
        for (const m of readFileSync(p, 'utf8').matchAll(/npm run ([\w:-]+)/g))
          named.push({ file: p.slice(ROOT.length), script: m[1] });
    }
  };
  walk(join(ROOT, 'native'));
  assert.ok(named.length >= 2, 'the scan finds the hints');
  const missing = named.filter((n) => !Object.hasOwn(scripts, n.script));
  assert.deepEqual(missing, [], `scripts named in messages but not in package.json`);
});

test('fuzz: hundreds of malformed requests are each refused with a 4xx, and the server stays up', async (t) => {
  const rng = new Rng(12);
  const token = server.token;
  const host = `127.0.0.1:${port}`;
  const auth: [string, string] = ['Authorization', `Bearer ${token}`];
  const cases: { what: string; data: Buffer }[] = [];
  const add = (what: string, data: Buffer): void => void cases.push({ what, data });
  const upgrade: [string, string][] = [
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
    ['Sec-WebSocket-Version', '13'],
  ];

  // Cookies: other apps' values, broken percent-encodings, ours mangled (no valid token anywhere).
  const badCookies = [
    'a=%',
    'x=50%off',
    'ds_token=%',
    'ds_token=%zz',
    `ds_token=${token}%`,
    `ds_token=%${token}`,
    `ds_token="${token}"`,
    'ds_token=',
    'ds_token',
    '=',
    ';;;=;',
    '%=%',
    'a=%E0%A4%A',
    'a=%C0%AF',
    'a=%ED%A0%80',
    'a=%%%%',
    `a=${'%'.repeat(3000)}`,
    `ds_token=${'%41'.repeat(1500)}`,
    'a=\xff\xfe%',
    `ds_token=${token.slice(0, -1)}`,
  ];
  for (const c of badCookies) {
    add(`cookie ${c.slice(0, 20)} GET /`, rawRequest('GET', '/', [['Cookie', c]]));
    add(`cookie ${c.slice(0, 20)} GET /?token`, rawRequest('GET', '/?token=wrong', [['Cookie', c]]));
    add(
      `cookie ${c.slice(0, 20)} POST`,
      rawRequest(
        'POST',
        '/api/app.info',
        [
          ['Cookie', c],
          ['Content-Type', 'application/json'],
        ],
        '{}',
      ),
    );
    add(`cookie ${c.slice(0, 20)} upgrade`, rawRequest('GET', '/api/events', [['Cookie', c], ...upgrade]));
    add(
      `cookie ${c.slice(0, 20)} upgrade ?token`,
      rawRequest('GET', '/api/events?token=%', [['Cookie', c], ...upgrade]),
    );
  }

  // Methods the API does not take, with the token.
  for (const method of [
    'GET',
    'PUT',
    'DELETE',
    'PATCH',
    'OPTIONS',
    'HEAD',
    'TRACE',
    'CONNECT',
    'PROPFIND',
    'FOO',
    'get',
    'G\0T',
    'POST POST',
  ])
    for (const target of ['/api/app.info', '/api/runs.get', '/api/'])
      add(
        `method ${method} ${target}`,
        rawRequest(method, target, [auth, ['Content-Type', 'application/json']], method === 'POST POST' ? '{}' : ''),
      );

  // Request targets: broken encodings, traversal, absolute forms, NUL, very long.
  for (const target of [
    '/%',
    '/%E0%A4%A',
    '/%00',
    '/a%00b',
    '//[',
    'http://[::1',
    'http://a b/',
    '/..%2f..%2f..%2fetc%2fpasswd',
    '/assets/missing.js',
    '/?token=%',
    `/${'a'.repeat(9000)}.js`,
    '/\x7f',
    '/\0',
  ]) {
    add(`target ${target.slice(0, 30)}`, rawRequest('GET', target, [auth]));
    add(`target ${target.slice(0, 30)} no token`, rawRequest('GET', target));
  }
  for (const name of [
    '',
    '%',
    '%00',
    'app.info%00',
    'app.info/x',
    '..%2fapp.info',
    'constructor',
    '__proto__',
    'toString',
    'hasOwnProperty',
    'x'.repeat(5000),
    '\x7f',
  ])
    add(
      `api name ${name.slice(0, 20)}`,
      rawRequest('POST', `/api/${name}`, [auth, ['Content-Type', 'application/json']], '{}'),
    );

  // Headers: content types, authorizations, hosts, origins, lengths.
  const post = (headers: [string, string][], body: string | Buffer = '{}') =>
    rawRequest('POST', '/api/app.info', headers, body);
  for (const ct of [
    '',
    'text/plain',
    'application/jsonfoo',
    'application/json-patch+json',
    'multipart/form-data; boundary=x',
    'application/x-www-form-urlencoded',
    'application/json, text/plain',
    '; application/json',
    'json',
    '*/*',
    'application/*',
  ])
    add(`content-type ${ct}`, post([auth, ['Content-Type', ct]]));
  add('no content-type', post([auth]));
  for (const a of [
    'Bearer',
    'Bearer ',
    'Basic Zm9vOmJhcg==',
    `Bearer ${token}x`,
    `Bearer  ${token.slice(1)}`,
    `Token ${token}`,
    `Bearer ${'x'.repeat(20_000)}`,
    `Bearer ${token}\0`,
    '%',
    `Bearer ${token}, Bearer x`,
  ])
    add(
      `authorization ${a.slice(0, 12)}`,
      post([
        ['Authorization', a],
        ['Content-Type', 'application/json'],
      ]),
    );
  for (const h of [
    '',
    'evil.example',
    `evil.example:${port}`,
    `127.0.0.1:${port + 1}`,
    `localhost:${port}.evil.example`,
    `127.0.0.1:${port}@evil`,
    `[::1]`,
    `%`,
    `127.0.0.1:${port}\0`,
  ])
    add(`host ${h}`, post([['Host', h], auth, ['Content-Type', 'application/json']]));
  add(
    'two hosts, evil first',
    post([['Host', 'evil.example'], ['Host', host], auth, ['Content-Type', 'application/json']]),
  );
  add(
    'no host',
    Buffer.from(
      `POST /api/app.info HTTP/1.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
    ),
  );
  for (const o of [
    'null',
    '',
    'http://evil.example',
    `http://127.0.0.1:${port + 1}`,
    `http://127.0.0.1:${port}.evil.example`,
    `http://127.0.0.1:${port}/x`,
    'file://',
    '%',
    `ftp://127.0.0.1:${port}`,
    `http://user@127.0.0.1:${port}`,
  ])
    add(`origin ${o}`, post([['Origin', o], auth, ['Content-Type', 'application/json']]));
  for (const [name, headers, body] of [
    ['content-length abc', [['Content-Length', 'abc']], '{}'],
    ['content-length -1', [['Content-Length', '-1']], '{}'],
    [
      'two content-lengths',
      [
        ['Content-Length', '2'],
        ['Content-Length', '3'],
      ],
      '{}',
    ],
    [
      'length and chunked',
      [
        ['Content-Length', '2'],
        ['Transfer-Encoding', 'chunked'],
      ],
      '{}',
    ],
    ['bad chunk', [['Transfer-Encoding', 'chunked']], 'zz\r\n{}\r\n0\r\n\r\n'],
    ['header with NUL', [['X-A', 'a\0b']], '{}'],
    ['header without colon', [['X-A\r\nbroken', '']], '{}'],
    ['header with space in name', [['X A', 'b']], '{}'],
  ] as [string, [string, string][], string][])
    add(name, post([auth, ['Content-Type', 'application/json'], ...headers], body));

  // Bodies: not JSON, the wrong JSON, too big, too deep, bytes that are not UTF-8.
  const bodies: (string | Buffer)[] = [
    '{',
    '[]',
    'null',
    '"x"',
    '1',
    'true',
    '1e309',
    '{"runId":1}',
    '{"runId":null}',
    '{"runId":"%"}',
    '{"runId":"_"}',
    '{"runId":"\\u0000"}',
    '{"runId":"a\\u0000b"}',
    `{"runId":"${'x'.repeat(70)}"}`,
    '{"runId":"x","extra":1}',
    '{"__proto__":{"runId":"x"}}',
    '{"constructor":{"prototype":{"runId":"x"}}}',
    '\uFEFF{"runId":"x"}',
    '{"runId":"\\ud800"}',
    '{"runId":"nope"}',
    '{"runId":"x"}{"runId":"y"}',
    Buffer.from([0x7b, 0x22, 0x72, 0x75, 0x6e, 0x49, 0x64, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    Buffer.from('{"runId":"a\0b"}', 'utf8'),
    Buffer.alloc(64, 0),
    '['.repeat(100_000),
    `${'['.repeat(50_000)}${']'.repeat(50_000)}`,
    `{"runId":"x","keys":${'['.repeat(20_000)}${']'.repeat(20_000)}}`,
    JSON.stringify({ runId: 'x'.repeat(2_000_000) }),
  ];
  for (const b of bodies) {
    add(
      `body ${String(b).slice(0, 20)} runs.get`,
      rawRequest('POST', '/api/runs.get', [auth, ['Content-Type', 'application/json']], b),
    );
    add(
      `body ${String(b).slice(0, 20)} runs.metrics`,
      rawRequest('POST', '/api/runs.metrics', [auth, ['Content-Type', 'application/json']], b),
    );
  }

  // Every method's parameters, one field at a time, replaced by a hostile value.
  const hostile: unknown[] = [
    '%',
    '_',
    '\0',
    'a\0b',
    'a\nb',
    '../../../../etc/passwd',
    '/etc/passwd',
    '%00',
    '',
    'x'.repeat(5000),
    '\u202e',
    -1,
    0,
    1.5,
    1e308,
    null,
    [],
    {},
    true,
    '1',
  ];
  const templates: Record<string, Record<string, unknown>> = {
    ...Object.fromEntries(Object.keys(METHODS).map((m) => [m, { x: 1 }])),
    ...WITH_PATHS,
    'models.tree': { modelId: 999_999, task: 'classification', numLabels: 2, batch: 1, seq: 8 },
    'datasets.stats': { versionId: 999_999, modelId: 999_999 },
    'runs.get': { runId: 'zzzz' },
    'runs.log': { runId: 'zzzz', tail: 5 },
    'runs.metrics': { runId: 'zzzz', keys: ['train/loss'], afterStep: 0 },
    'runs.pause': { runId: 'zzzz' },
    'runs.compare': { runIds: ['zzzz'] },
    'runs.estimate': { modelId: 999_999, datasetVersionId: 999_999, deltas: [{ method: 'lora' }] },
    'plugins.get': { name: 'nope' },
    'plugins.tag': { ref: 'nope@1', add: ['a'] },
    'plugins.alias': { ref: 'nope@1', alias: 'prod' },
    'plugins.notes': { ref: 'nope@1', notes: 'n' },
    'playground.predict': { modelId: 999_999, plugins: ['nope@1'], inputs: ['x'], device: 'cpu' },
  };
  for (const [m, tpl] of Object.entries(templates)) {
    for (const field of Object.keys(tpl)) {
      for (let i = 0; i < 4; i++) {
        const v = hostile[rng.int(hostile.length)];
        // Path fields keep hostile values outside the allowed folder; ids stay ids that do not exist.
        const params = { ...tpl, [field]: v };
        add(
          `${m}.${field}=${JSON.stringify(v)?.slice(0, 20)}`,
          rawRequest('POST', `/api/${m}`, [auth, ['Content-Type', 'application/json']], JSON.stringify(params)),
        );
      }
    }
  }

  // The event socket: bad hosts, origins, paths, keys and versions.
  for (const [name, target, headers] of [
    ['no token', '/api/events', upgrade],
    ['query token %', '/api/events?token=%', upgrade],
    ['other path', '/api/eventsx', [auth, ...upgrade]],
    ['static path', '/', [auth, ...upgrade]],
    ['bad origin', '/api/events', [auth, ['Origin', `http://127.0.0.1:${port + 1}`], ...upgrade]],
    ['null origin', '/api/events', [auth, ['Origin', 'null'], ...upgrade]],
    ['bad host', '/api/events', [auth, ['Host', `evil.example:${port}`], ...upgrade]],
    ['bad key', '/api/events', [auth, ...upgrade.map(([k, v]) => [k, k === 'Sec-WebSocket-Key' ? '%' : v])]],
    ['version 99', '/api/events', [auth, ...upgrade.map(([k, v]) => [k, k === 'Sec-WebSocket-Version' ? '99' : v])]],
    ['h2c', '/api/events', [auth, ...upgrade.map(([k, v]) => [k, k === 'Upgrade' ? 'h2c' : v])]],
    ['bad URL', '//[', [auth, ...upgrade]],
    ['bad encoding', '/api/events?token=%E0%A4%A', upgrade],
  ] as [string, string, [string, string][]][])
    add(`upgrade ${name}`, rawRequest('GET', target, headers));

  const byStatus: Record<number, number> = {};
  const wrong: string[] = [];
  for (const c of cases) {
    const status = await raw(c.data);
    byStatus[status] = (byStatus[status] ?? 0) + 1;
    if (status < 400 || status > 499) wrong.push(`${c.what}: ${status}`);
  }
  t.diagnostic(`${cases.length} malformed requests; answers by status: ${JSON.stringify(byStatus)}`);
  assert.ok(cases.length >= 300, `${cases.length} cases`);
  assert.deepEqual(wrong, [], 'every malformed request gets a 4xx');
  assert.equal((await send('/api/app.info', { headers: { ...json, ...bearer() } })).status, 200, 'still up');
});

test('serve --public-host: a tunnel on another local port is one of the server names; a malformed one is refused', async () => {
  const { spawn, spawnSync } = await import('node:child_process');
  const bin = fileURLToPath(new URL('../bin/delta-studio.js', import.meta.url));
  const bad = spawnSync(process.execPath, [bin, 'serve', '--port', '0', '--public-host', 'no port'], {
    encoding: 'utf8',
  });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--public-host no port: write host:port/);
  const child = spawn(process.execPath, [bin, 'serve', '--port', '0', '--public-host', 'localhost:9999', '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const line = await new Promise<string>((res, rej) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d;
        if (buf.includes('\n')) res(buf.split('\n')[0]);
      });
      child.on('exit', (c) => rej(new Error(`serve exited ${c}`)));
    });
    const { port, token } = JSON.parse(line) as { port: number; token: string };
    const ask = (host: string) =>
      new Promise<number>((res, rej) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: '/api/app.info',
            method: 'POST',
            headers: { host, 'content-type': 'application/json', authorization: `Bearer ${token}` },
          },
          (r) => {
            r.resume();
            res(r.statusCode ?? 0);
          },
        );
        req.on('error', rej);
        req.end('{}');
      });
    assert.equal(await ask('localhost:9999'), 200);
    assert.equal(await ask('localhost:9998'), 421);
  } finally {
    child.kill();
  }
});
