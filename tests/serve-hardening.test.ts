// `delta-studio serve` against hostile input: run-id "prefixes" that are SQL patterns; control characters in paths
// and names. Every refusal is a 4xx that says why, and the server stays up.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContractError, METHODS, pathsOf, validateCall, type MethodName } from '../native/contract/index.js';
import { createService, type Service } from '../native/api/service.js';
import { startServer, type RunningServer } from '../native/api/server.js';
import { Workspace, WorkspaceError } from '../native/store/workspace.js';

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
