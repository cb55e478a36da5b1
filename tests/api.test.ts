// `delta-studio serve`'s transport and the service behind it: the token on every request and on the event socket,
// parameter validation of every method, folder containment of every path, and the main flow over HTTP — import a
// model and data, train LoRA, watch the events, export, predict — and a two-method sweep.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, symlinkSync, mkdirSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { METHODS, type EventName, type Events, type Result } from '../native/contract/index.js';
import { createService, type Service } from '../native/api/service.js';
import { startServer, type RunningServer } from '../native/api/server.js';
import { openSocket } from './support/event-socket.js';

const DEMO = fileURLToPath(new URL('../native/demo/', import.meta.url));
let tmp: string;
let service: Service;
let server: RunningServer;
let base: string;
let socket: WebSocket;
const events: { event: EventName; data: Events[EventName] }[] = [];

async function call<T = unknown>(
  method: string,
  params: unknown = {},
  headers: Record<string, string> | null = {},
): Promise<{
  status: number;
  result: T;
  error?: { code: string; message: string; issues?: { path: string; message: string }[] };
}> {
  const res = await fetch(`${base}api/${method}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(headers === null ? {} : { authorization: `Bearer ${server.token}`, ...headers }),
    },
    body: JSON.stringify(params),
  });
  const body = (await res.json()) as { result: T; error?: { code: string; message: string } };
  return { status: res.status, ...body };
}
async function ok<M extends keyof typeof METHODS>(method: M, params: unknown = {}): Promise<Result<M>> {
  const r = await call<Result<M>>(method, params);
  assert.equal(r.status, 200, `${method}: ${JSON.stringify(r.error)}`);
  return r.result;
}
async function waitFor<E extends EventName>(
  event: E,
  pred: (d: Events[E]) => boolean,
  ms = 30_000,
): Promise<Events[E]> {
  const t0 = Date.now();
  for (;;) {
    const hit = events.find((e) => e.event === event && pred(e.data as Events[E]));
    if (hit) return hit.data as Events[E];
    if (Date.now() - t0 > ms)
      throw new Error(`no ${event} event within ${ms} ms; got ${JSON.stringify(events.slice(-5))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const jobDone = async (jobId: string): Promise<unknown> => {
  const d = await waitFor('job.done', (x) => x.jobId === jobId, 60_000);
  assert.equal(d.error, undefined, JSON.stringify(d.error));
  return d.result;
};
before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'ds-api-'));
  mkdirSync(join(tmp, 'data'));
  cpSync(join(DEMO, 'reviews-train.csv'), join(tmp, 'data', 'train.csv'));
  cpSync(join(DEMO, 'reviews-test.csv'), join(tmp, 'data', 'test.csv'));
  symlinkSync('/etc', join(tmp, 'data', 'escape'));
  service = createService({ stateDir: join(tmp, 'state'), transport: 'http' });
  server = await startServer({
    service,
    port: 0,
    allowedRoots: [join(tmp, 'data'), join(DEMO, 'backbone'), join(tmp, 'ws')],
  });
  base = server.url;
  const s = await openSocket(`${base.replace('http', 'ws')}api/events`, {
    headers: { authorization: `Bearer ${server.token}` },
  });
  assert.ok(s instanceof WebSocket, `events socket: ${String(s)}`);
  socket = s;
  socket.on('message', (m) => events.push(JSON.parse(String(m)) as (typeof events)[number]));
});

after(async () => {
  socket?.close();
  await server?.close();
  await service?.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('the token guards every request and the event socket', async () => {
  assert.equal((await call('app.info', {}, null)).status, 401);
  assert.equal((await call('app.info', {}, { authorization: 'Bearer nope' })).status, 401);
  assert.equal((await call('app.info', {}, { authorization: `Bearer ${server.token}x` })).status, 401);
  assert.equal((await fetch(base)).status, 401);
  // The printed URL sets the cookie and redirects; the cookie then works alone.
  const r = await fetch(`${base}?token=${server.token}`, { redirect: 'manual' });
  assert.equal(r.status, 302);
  const cookie = r.headers.get('set-cookie') ?? '';
  assert.match(cookie, /ds_token=.*HttpOnly.*SameSite=Strict/);
  const withCookie = await call('app.info', {}, { authorization: '', cookie: cookie.split(';')[0] });
  assert.equal(withCookie.status, 200);
  assert.equal((await call('app.info', {}, { authorization: '', cookie: 'ds_token=wrong' })).status, 401);
  assert.equal((await fetch(`${base}?token=wrong`, { redirect: 'manual' })).status, 401);
  const page = await fetch(base, { headers: { cookie: cookie.split(';')[0] } });
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  const wsUrl = `${base.replace('http', 'ws')}api/events`;
  assert.equal(await openSocket(wsUrl), 401);
  assert.equal(await openSocket(`${wsUrl}?token=wrong`), 401);
  assert.equal(
    await openSocket(wsUrl, { headers: { origin: 'http://evil.example', cookie: cookie.split(';')[0] } }),
    403,
  );
  const good = await openSocket(`${wsUrl}?token=${server.token}`);
  assert.ok(good instanceof WebSocket);
  good.close();
});

test('every method is reachable and refuses bad parameters, naming them', async () => {
  for (const method of Object.keys(METHODS)) {
    const r = await call(method, { bogus_param: 1 });
    assert.equal(r.status, 400, method);
    assert.equal(r.error?.code, 'bad-params', method);
    assert.ok(
      r.error?.issues?.some((i) => i.message.includes('bogus_param') || i.path !== '(params)'),
      `${method}: ${JSON.stringify(r.error)}`,
    );
  }
  const typed = await call('runs.metrics', { runId: 5 });
  assert.equal(typed.error?.issues?.[0].path, 'runId');
  assert.equal((await call('no.such')).error?.code, 'unknown-method');
  const bad = await fetch(`${base}api/app.info`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body: '{nope',
  });
  assert.equal(bad.status, 400);
  const big = await fetch(`${base}api/app.info`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ x: 'a'.repeat(2_000_000) }),
  });
  assert.equal(big.status, 400);
});

test('paths outside the workspace and the allowed folders are refused', async () => {
  for (const path of [
    '/etc',
    join(tmp, 'data', '..', '..', 'etc'),
    `${join(tmp, 'data')}/../..`,
    join(tmp, 'data', 'escape'),
    join(tmp, 'data', 'escape', 'passwd'),
    join(tmp, 'elsewhere', 'new'),
  ]) {
    const r = await call('workspace.create', { path });
    assert.equal(r.status, 403, path);
    assert.equal(r.error?.code, 'path-outside', path);
    assert.equal((await call('datasets.preview', { path })).error?.code, 'path-outside');
  }
});

test('the main flow over HTTP: model, data, LoRA run with events, plugin, export, playground', async () => {
  const info = await ok('workspace.create', { path: join(tmp, 'ws') });
  assert.equal(info.counts.runs, 0);
  assert.equal((await ok('app.info')).workspace, info.path);
  assert.equal((await ok('workspace.recent'))[0].path, info.path);
  const model = await ok('models.import', { path: join(DEMO, 'backbone') });
  const tree = await ok('models.tree', {
    modelId: model.id,
    task: 'classification',
    numLabels: 2,
    deltas: [{ method: 'lora', r: 8 }],
  });
  assert.ok(tree.report && tree.report.trainableParams > 0);
  type Node = typeof tree.tree.root;
  const nodes = (n: Node): Node[] => [n, ...n.children.flatMap(nodes)];
  assert.ok(nodes(tree.tree.root).some((m) => m.delta?.includes('lora')));
  assert.equal((await call('models.tree', { modelId: 999 })).error?.code, 'not-found');

  const preview = await ok('datasets.preview', { path: join(tmp, 'data', 'train.csv'), rows: 5 });
  assert.deepEqual(preview.columns, ['text', 'label']);
  assert.equal(preview.rows.length, 5);
  assert.deepEqual(preview.guess, { task: 'classification', columns: { text: 'text', label: 'label' } });
  const { jobId } = await ok('datasets.import', {
    path: join(tmp, 'data', 'train.csv'),
    validationPath: join(tmp, 'data', 'test.csv'),
    name: 'reviews',
    task: 'classification',
  });
  const imported = (await jobDone(jobId)) as Result<'datasets.import'> extends { jobId: string }
    ? { versionId: number; rows: Record<string, number> }
    : never;
  assert.equal(imported.rows.train, 800);
  const stats = await ok('datasets.stats', { versionId: imported.versionId, modelId: model.id });
  assert.equal(
    Object.values(stats.labelCounts?.train ?? {}).reduce((a, b) => a + b, 0),
    800,
  );
  assert.ok(stats.tokens && stats.tokens.histogram.length > 0);

  const cfg = {
    modelId: model.id,
    datasetVersionId: imported.versionId,
    deltas: [{ method: 'lora', r: 8 }],
    maxSteps: 12,
    maxLength: 32,
    device: 'cpu',
    plugin: 'reviews-lora',
    evalEvery: 12,
  };
  const est = await ok('runs.estimate', cfg);
  assert.ok(
    est.trainableParams > 0 && est.trainablePercent < 10 && est.secondsEstimate > 0 && est.steps === 12,
    JSON.stringify(est),
  );
  assert.match(est.basis, /tokens\/s/);
  assert.equal((await call('runs.start', { ...cfg, maxStep: 3 })).error?.code, 'bad-params');
  const started = await ok('runs.start', cfg);
  const done = await waitFor(
    'run.status',
    (d) => d.runId === started.runId && !['queued', 'running', 'paused'].includes(d.status),
    60_000,
  );
  assert.equal(done.status, 'finished', done.reason ?? '');
  assert.deepEqual(done.plugin, { name: 'reviews-lora', version: 1 });
  assert.ok(
    events.some((e) => e.event === 'run.progress' && (e.data as Events['run.progress']).runId === started.runId),
  );
  assert.ok(events.some((e) => e.event === 'run.eval' && (e.data as Events['run.eval']).runId === started.runId));
  const metrics = await ok('runs.metrics', { runId: started.runId, keys: ['train/loss'] });
  assert.ok(metrics.series['train/loss'].length > 0);
  assert.equal((await ok('runs.get', { runId: started.runId })).plugin?.version, 1);
  // The run's log, from its folder: status changes, progress and evaluations, the last line the finish.
  const log = await ok('runs.log', { runId: started.runId });
  assert.ok(
    log.lines.some((l) => / step 1\/\d+ epoch 0 loss /.test(l)),
    log.lines.join('\n'),
  );
  assert.match(log.lines.at(-1)!, /status finished; plugin \S+@1$/);
  assert.ok(events.some((e) => e.event === 'run.log' && (e.data as Events['run.log']).runId === started.runId));
  assert.equal((await call('runs.pause', { runId: started.runId })).error?.code, 'conflict');

  const plugin = await ok('plugins.get', { name: 'reviews-lora' });
  assert.equal(plugin.versions[0].version, 1);
  assert.equal(plugin.lineage[0].run?.id, started.runId);
  assert.deepEqual((await ok('plugins.tag', { ref: 'reviews-lora@1', add: ['demo'] })).tags, ['demo']);
  assert.equal((await ok('plugins.alias', { ref: 'reviews-lora@1', alias: 'prod' })).version, 1);
  const exp = await ok('plugins.export', { ref: 'reviews-lora@1', format: 'peft' });
  const exported = (await jobDone(exp.jobId)) as { path: string; files: string[] };
  assert.ok(exported.files.length > 0 && exported.files.every((f) => existsSync(f)), JSON.stringify(exported));
  assert.ok(events.some((e) => e.event === 'job.progress' && (e.data as Events['job.progress']).jobId === exp.jobId));
  assert.equal(
    (await call('plugins.export', { ref: 'reviews-lora@1', format: 'peft', folder: '/tmp/../etc' })).error?.code,
    'path-outside',
  );

  const pred = await ok('playground.predict', {
    modelId: model.id,
    plugins: ['reviews-lora@1'],
    inputs: ['the film was superb'],
    device: 'cpu',
  });
  const withPlugin = pred.rows[0].plugins;
  assert.ok(
    withPlugin && 'label' in withPlugin && ['positive', 'negative'].includes(withPlugin.label),
    JSON.stringify(pred),
  );
  // The bare backbone has no classification head: the answer says so instead of failing.
  assert.ok((pred.rows[0].base && 'label' in pred.rows[0].base) || pred.baseMessage, JSON.stringify(pred));
  const again = await ok('playground.predict', {
    modelId: model.id,
    plugins: ['reviews-lora'],
    inputs: ['never again', 'we loved it'],
    device: 'cpu',
    compareBase: false,
  });
  assert.equal(again.rows.length, 2);
  assert.ok(again.rows.every((r) => r.plugins && 'label' in r.plugins));
});

test('a sweep of two methods runs both, one after the other, and compares them', async () => {
  const [model] = await ok('models.list');
  const [ds] = await ok('datasets.list');
  const { runIds } = await ok('sweeps.start', {
    base: {
      modelId: model.id,
      datasetVersionId: ds.versions[0].id,
      deltas: [{ method: 'lora', r: 4 }],
      maxSteps: 6,
      maxLength: 32,
      device: 'cpu',
      evalEvery: 6,
    },
    variants: [{ plugin: 'sweep-lora' }, { deltas: [{ method: 'bitfit' }], plugin: 'sweep-bitfit' }],
  });
  assert.equal(runIds.length, 2);
  for (const runId of runIds) {
    const d = await waitFor(
      'run.status',
      (x) => x.runId === runId && ['finished', 'failed', 'diverged', 'cancelled'].includes(x.status),
      60_000,
    );
    assert.equal(d.status, 'finished', d.reason ?? '');
  }
  const cmp = await ok('runs.compare', { runIds });
  assert.deepEqual(
    cmp.runs.map((r) => r.method),
    ['lora', 'bitfit'],
  );
  assert.ok(cmp.metricKeys.includes('accuracy'), JSON.stringify(cmp));
  assert.equal((await ok('runs.list', { status: 'finished' })).length, 3);
});

test('one trainer at a time: pause, resume, cancel, a queued run dropped, and a cancelled run resumed to the end', async () => {
  const [model] = await ok('models.list');
  const [ds] = await ok('datasets.list');
  const cfg = {
    modelId: model.id,
    datasetVersionId: ds.versions[0].id,
    deltas: [{ method: 'bitfit' }],
    maxSteps: 60,
    maxLength: 32,
    batchSize: 4,
    device: 'cpu',
    checkpointEvery: 5,
    plugin: 'ctl',
  };
  const a = await ok('runs.start', cfg);
  const b = await ok('runs.start', { ...cfg, plugin: 'ctl-b' });
  assert.equal(b.status, 'queued');
  assert.ok(b.position >= 1);
  await waitFor('run.progress', (d) => d.runId === a.runId && d.step >= 2);
  assert.equal((await ok('runs.cancel', { runId: b.runId })).status, 'cancelled');
  await ok('runs.pause', { runId: a.runId });
  await waitFor('run.status', (d) => d.runId === a.runId && d.status === 'paused');
  await ok('runs.resume', { runId: a.runId });
  await waitFor(
    'run.status',
    (d) =>
      d.runId === a.runId &&
      d.status === 'running' &&
      events.some((e) => e.event === 'run.status' && (e.data as Events['run.status']).status === 'paused'),
  );
  await waitFor('run.progress', (d) => d.runId === a.runId && d.step >= 6);
  await ok('runs.cancel', { runId: a.runId });
  const cancelled = await waitFor('run.status', (d) => d.runId === a.runId && d.status === 'cancelled');
  assert.equal(cancelled.plugin ?? null, null);
  const n = events.length;
  assert.equal((await ok('runs.resume', { runId: a.runId })).runId, a.runId);
  const end = await waitFor(
    'run.status',
    (d) => d.runId === a.runId && d.status === 'finished' && events.indexOf(events.find((e) => e.data === d)!) >= n,
    60_000,
  );
  assert.deepEqual(end.plugin, { name: 'ctl', version: 1 });
  assert.equal((await ok('runs.get', { runId: a.runId })).run.steps, 60);
  assert.equal((await ok('runs.get', { runId: b.runId })).run.status, 'cancelled');
});

test('static files: content types, client routes, no traversal', async () => {
  const dist = join(tmp, 'dist');
  mkdirSync(join(dist, 'assets'), { recursive: true });
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dist, 'index.html'), '<!doctype html><title>ds</title>');
  writeFileSync(join(dist, 'assets', 'app.js'), 'export {};');
  symlinkSync('/etc/hostname', join(dist, 'assets', 'leak.txt'));
  const s2 = await startServer({ service, port: 0, staticDir: dist, allowedRoots: [] });
  try {
    const get = (p: string): Promise<Response> =>
      fetch(`${s2.url}${p}`, { headers: { authorization: `Bearer ${s2.token}` } });
    const js = await get('assets/app.js');
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /text\/javascript/);
    const route = await get('runs/abc');
    assert.match(await route.text(), /<title>ds/);
    assert.match(route.headers.get('content-security-policy') ?? '', /connect-src 'self' ws:/);
    assert.equal((await get('assets/missing.js')).status, 404);
    assert.equal((await get('..%2f..%2f..%2f..%2fetc%2fpasswd')).status, 403);
    assert.doesNotMatch(await (await get('%2e%2e/%2e%2e/etc/passwd')).text(), /root:/); // URL parsing folds the dots
    assert.equal((await get('assets/leak.txt')).status, 403);
  } finally {
    await s2.close();
  }
});

test('closing the service during a run leaves it interrupted and resumable', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ds-api-close-'));
  const service = createService({ stateDir: join(dir, 'state'), workspace: join(dir, 'ws') });
  const h = service.handlers;
  await h['workspace.create']({ path: join(dir, 'ws') });
  const model = await h['models.import']({ path: join(DEMO, 'backbone'), copy: false });
  const seen: string[] = [];
  service.events.on('run.progress', () => {
    seen.push('progress');
  });
  const { jobId } = await h['datasets.import']({
    path: join(DEMO, 'reviews-train.csv'),
    name: 'reviews',
    task: 'classification',
    columns: {},
    validationFraction: 0.1,
    seed: 0,
  });
  const done = new Promise<{ versionId?: number; version?: { id: number } }>((resolve) =>
    service.events.on('job.done', (e) => {
      if (e.jobId === jobId) resolve(e.result as never);
    }),
  );
  const imported = await done;
  const versionId = imported.versionId ?? imported.version?.id;
  assert.ok(versionId, `dataset version id in ${JSON.stringify(imported)}`);
  const { runId } = (await h['runs.start']({
    modelId: model.id,
    datasetVersionId: versionId,
    deltas: [{ method: 'lora' }],
    epochs: 50,
    batchSize: 8,
    accumulation: 1,
    lr: 1e-3,
    schedule: 'linear',
    warmup: 0,
    weightDecay: 0,
    maxLength: 32,
    seed: 0,
    device: 'cpu',
    precision: 'float32',
    checkpointEvery: 5,
  } as never)) as { runId: string };
  const t0 = Date.now();
  while (seen.length < 3 && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 20));
  await service.close();
  const again = createService({ stateDir: join(dir, 'state'), workspace: join(dir, 'ws') });
  await again.handlers['workspace.open']({ path: join(dir, 'ws') });
  const { run } = await again.handlers['runs.get']({ runId });
  assert.equal(run.status, 'interrupted');
  assert.match(run.reason ?? '', /app was closed during the run; resume it/);
  assert.ok(run.steps >= 1 && run.steps < 50 * 90, `stopped part way: ${run.steps} steps`);
  await again.close();
  rmSync(dir, { recursive: true, force: true });
});
