// The Electron shell with fake electron objects and a fake service: nothing here launches Electron.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { EventEmitter } from 'node:events';
import { METHODS } from '../native/contract/index.js';
import {
  CSP,
  createApp,
  isAllowedExternal,
  SECURE_WEB_PREFERENCES,
  type AppDeps,
  type IpcEventLike,
  type ServiceLike,
  type WebContentsLike,
} from '../electron/main.js';
import { exposeStudio } from '../electron/preload.js';
import { utilityTrainer, type UtilityChildLike } from '../electron/trainer-host.js';
import { cudaProcessEnv } from '../native/runtime/cuda-libs.js';

// A handful of valid parameters per method, so every method can be called for real through the channel.
const VALID: Record<string, unknown> = {
  'workspace.create': { path: '/tmp/ws' },
  'workspace.open': { path: '/tmp/ws' },
  'models.import': { path: '/tmp/m' },
  'models.tree': { modelId: 1 },
  'models.pull': { repo: 'org/name' },
  'datasets.preview': { path: '/tmp/d.csv' },
  'datasets.import': { path: '/tmp/d.csv', name: 'd', task: 'classification' },
  'datasets.stats': { versionId: 1 },
  'runs.estimate': { modelId: 1, datasetVersionId: 1, deltas: [{ method: 'lora' }] },
  'runs.start': { modelId: 1, datasetVersionId: 1, deltas: [{ method: 'lora' }] },
  'runs.get': { runId: 'r1' },
  'runs.log': { runId: 'r1' },
  'runs.metrics': { runId: 'r1' },
  'runs.pause': { runId: 'r1' },
  'runs.resume': { runId: 'r1' },
  'runs.cancel': { runId: 'r1' },
  'runs.compare': { runIds: ['r1'] },
  'sweeps.start': { base: { modelId: 1, datasetVersionId: 1, deltas: [{ method: 'lora' }] }, variants: [{ lr: 0.01 }] },
  'plugins.get': { name: 'p' },
  'plugins.tag': { ref: 'p@1' },
  'plugins.alias': { ref: 'p@1', alias: 'best' },
  'plugins.notes': { ref: 'p@1', notes: 'x' },
  'plugins.export': { ref: 'p@1', format: 'peft' },
  'plugins.importPeft': { path: '/tmp/a', modelId: 1 },
  'plugins.showInFolder': { path: '/tmp/a' },
  'playground.predict': { modelId: 1, plugins: [], inputs: ['hi'] },
  'playground.chat': { modelId: 1, plugins: [], messages: [{ role: 'user', content: 'hi' }] },
};

function fakes() {
  const calls: { method: string; params: unknown }[] = [];
  const emitter = new EventEmitter();
  const handlers: Record<string, (params: unknown) => Promise<unknown>> = {};
  for (const m of Object.keys(METHODS))
    handlers[m] = async (params: unknown) => {
      calls.push({ method: m, params });
      return m === 'workspace.recent' ? [] : { method: m };
    };
  const service: ServiceLike = {
    // A fake answers every method alike: typed loosely on purpose.
    handlers: handlers as unknown as ServiceLike['handlers'],
    events: { on: (n, fn) => void emitter.on(n, fn), off: (n, fn) => void emitter.off(n, fn) },
    close: async () => {
      closed = true;
    },
  };
  let closed = false;
  const mkContents = (
    id: number,
  ): WebContentsLike & {
    listeners: Map<string, (...a: unknown[]) => void>;
    openHandler?: (d: { url: string }) => { action: string };
    sent: unknown[][];
  } => {
    const listeners = new Map<string, (...a: unknown[]) => void>();
    const wc = {
      id,
      listeners,
      sent: [] as unknown[][],
      openHandler: undefined as undefined | ((d: { url: string }) => { action: string }),
      send: (...a: unknown[]) => void wc.sent.push(a),
      on: (e: string, l: (...a: unknown[]) => void) => void listeners.set(e, l),
      setWindowOpenHandler: (h: (d: { url: string }) => { action: 'deny' | 'allow' }) => {
        wc.openHandler = h;
      },
      isDestroyed: () => false,
    };
    return wc;
  };
  const windows: { options: Record<string, unknown>; webContents: ReturnType<typeof mkContents>; url?: string }[] = [];
  const ipc = new Map<string, (event: IpcEventLike, ...args: unknown[]) => unknown>();
  const opened: string[] = [];
  const appEvents = new Map<string, (...a: unknown[]) => void>();
  type PermissionHandler = (wc: unknown, p: string, cb: (g: boolean) => void) => void;
  type HeadersListener = (
    d: { url: string; responseHeaders?: Record<string, string[] | string> },
    cb: (r: { responseHeaders?: Record<string, string[] | string> }) => void,
  ) => void;
  const session: {
    permission?: PermissionHandler;
    headers?: HeadersListener;
    schemes: string[];
    setPermissionRequestHandler(h: PermissionHandler | null): void;
    setPermissionCheckHandler(): void;
    webRequest: { onHeadersReceived(l: HeadersListener): void };
    protocol: { handle(s: string): void };
  } = {
    schemes: [],
    setPermissionRequestHandler(h) {
      session.permission = h ?? undefined;
    },
    setPermissionCheckHandler() {},
    webRequest: {
      onHeadersReceived(l) {
        session.headers = l;
      },
    },
    protocol: {
      handle(s) {
        session.schemes.push(s);
      },
    },
  };
  const privileged: { scheme: string; privileges: Record<string, boolean> }[] = [];
  const deps: AppDeps = {
    app: {
      whenReady: async () => {},
      on: (e, l) => void appEvents.set(e, l as (...a: unknown[]) => void),
      quit: () => {},
      exit: () => {},
      getPath: () => '/tmp/user',
      getVersion: () => '0.1.0',
      isPackaged: false,
    },
    BrowserWindow: class {
      webContents = mkContents(1);
      constructor(public options: Record<string, unknown>) {
        windows.push(this);
      }
      async loadURL(url: string) {
        (this as unknown as { url: string }).url = url;
      }
      on() {}
      isDestroyed() {
        return false;
      }
    } as unknown as AppDeps['BrowserWindow'],
    ipcMain: { handle: (c, l) => void ipc.set(c, l), removeHandler: (c) => void ipc.delete(c) },
    dialog: {
      showOpenDialog: async () => ({ canceled: false, filePaths: ['/tmp/picked'] }),
      showMessageBox: async () => ({ response: 0 }),
    },
    shell: { openExternal: async (u) => void opened.push(u) },
    Menu: { buildFromTemplate: (t) => t, setApplicationMenu: () => {} },
    protocol: { registerSchemesAsPrivileged: (s) => void privileged.push(...s) },
    session: { defaultSession: session },
    createService: () => service,
    rendererDir: '/nonexistent/renderer/dist',
    preloadPath: '/tmp/preload.cjs',
  };
  return {
    deps,
    calls,
    emitter,
    windows,
    ipc,
    opened,
    session,
    privileged,
    appEvents,
    mkContents,
    isClosed: () => closed,
  };
}

async function started() {
  const f = fakes();
  const studio = createApp(f.deps);
  const win = await studio.ready;
  const good: IpcEventLike = { sender: win.webContents, senderFrame: { url: 'app://studio/index.html' } };
  return { ...f, studio, win, good };
}

test('every contract method is reachable through studio:call, with defaults filled in', async () => {
  const { ipc, good, calls } = await started();
  const h = ipc.get('studio:call')!;
  for (const m of Object.keys(METHODS)) {
    const r = (await h(good, m, VALID[m] ?? {})) as { ok: boolean; error?: unknown };
    assert.equal(r.ok, true, `${m}: ${JSON.stringify(r.error)}`);
    assert.ok(
      calls.some((c) => c.method === m),
      m,
    );
  }
  const check = calls.find((c) => c.method === 'workspace.check')!;
  assert.deepEqual(check.params, { repair: false });
});

test('bad arguments are refused with bad-params naming the parameter; unknown methods too', async () => {
  const { ipc, good, calls } = await started();
  const h = ipc.get('studio:call')!;
  const n = calls.length;
  const r = (await h(good, 'runs.get', { runId: 42 })) as {
    ok: false;
    error: { code: string; issues: { path: string }[] };
  };
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'bad-params');
  assert.equal(r.error.issues[0].path, 'runId');
  const extra = (await h(good, 'workspace.open', { path: '/x', evil: 1 })) as {
    ok: false;
    error: { code: string; message: string };
  };
  assert.equal(extra.error.code, 'bad-params');
  assert.match(extra.error.message, /evil/);
  const unknown = (await h(good, 'fs.readFile', { path: '/etc/passwd' })) as { ok: false; error: { code: string } };
  assert.equal(unknown.error.code, 'unknown-method');
  const proto = (await h(good, '__proto__', {})) as { ok: false; error: { code: string } };
  assert.equal(proto.error.code, 'unknown-method');
  assert.equal(calls.length, n, 'nothing reached the service');
});

test('a call from another frame URL or other webContents is refused', async () => {
  const { ipc, win, calls, mkContents } = await started();
  const h = ipc.get('studio:call')!;
  const n = calls.length;
  for (const ev of [
    { sender: win.webContents, senderFrame: { url: 'https://evil.example/' } },
    { sender: win.webContents, senderFrame: { url: 'file:///etc/index.html' } },
    { sender: win.webContents, senderFrame: { url: 'app://other/index.html' } },
    { sender: win.webContents, senderFrame: null },
    { sender: mkContents(2), senderFrame: { url: 'app://studio/index.html' } },
  ] as IpcEventLike[]) {
    const r = (await h(ev, 'app.info', {})) as { ok: false; error: { code: string } };
    assert.equal(r.ok, false);
    assert.equal(r.error.code, 'unauthorized');
    assert.equal(await ipc.get('studio:pickFolder')!(ev), null);
  }
  assert.equal(calls.length, n);
});

test('the window is secure: isolation, sandbox, no node, web security, CSP, permissions denied, app:// origin', async () => {
  const { windows, session, privileged } = await started();
  assert.equal(windows.length, 1);
  const wp = windows[0].options.webPreferences as Record<string, unknown>;
  for (const [k, v] of Object.entries(SECURE_WEB_PREFERENCES)) assert.equal(wp[k], v, k);
  assert.equal(wp.contextIsolation, true);
  assert.equal(wp.sandbox, true);
  assert.equal(wp.nodeIntegration, false);
  assert.equal(wp.webSecurity, true);
  assert.equal(wp.allowRunningInsecureContent, false);
  assert.equal(wp.preload, '/tmp/preload.cjs');
  assert.equal(windows[0].url ?? (windows[0] as unknown as { url: string }).url, 'app://studio/index.html');
  assert.deepEqual(privileged[0], {
    scheme: 'app',
    privileges: { standard: true, secure: true, supportFetchAPI: true, codeCache: true },
  });
  assert.deepEqual(session.schemes, ['app']);
  let granted: boolean | undefined;
  session.permission!(null, 'media', (g) => {
    granted = g;
  });
  assert.equal(granted, false);
  let headers: Record<string, string[] | string> | undefined;
  session.headers!({ url: 'app://studio/index.html', responseHeaders: {} }, (r) => {
    headers = r.responseHeaders;
  });
  assert.deepEqual(headers!['Content-Security-Policy'], [CSP]);
  assert.match(CSP, /script-src 'self'(;|$)/);
  assert.doesNotMatch(CSP, /unsafe-eval/);
});

test('navigation away from the app is blocked; new windows are denied; only allow-listed https goes to the browser', async () => {
  const { win, opened } = await started();
  const wc = win.webContents as unknown as {
    listeners: Map<string, (...a: unknown[]) => void>;
    openHandler: (d: { url: string }) => { action: string };
  };
  const nav = (url: string) => {
    let prevented = false;
    wc.listeners.get('will-navigate')!(
      {
        preventDefault: () => {
          prevented = true;
        },
      },
      url,
    );
    return prevented;
  };
  assert.equal(nav('https://evil.example/'), true);
  assert.equal(nav('file:///etc/passwd'), true);
  assert.equal(nav('app://studio/runs'), false);
  assert.equal(wc.openHandler({ url: 'https://github.com/x/y' }).action, 'deny');
  assert.equal(wc.openHandler({ url: 'http://github.com/' }).action, 'deny');
  assert.equal(wc.openHandler({ url: 'https://evil.example/' }).action, 'deny');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(opened, ['https://github.com/x/y']);
  for (const ok of ['https://github.com/', 'https://huggingface.co/bert-base-uncased', 'https://onnxruntime.ai/docs/'])
    assert.equal(isAllowedExternal(ok), true, ok);
  for (const bad of [
    'http://github.com/',
    'https://github.com.evil.example/',
    'https://user:pw@github.com/',
    'javascript:alert(1)',
    'file:///etc/passwd',
    'https://evilgithub.com/',
    'not a url',
  ])
    assert.equal(isAllowedExternal(bad), false, bad);
});

test('events are forwarded to the window; quitting with a run going asks, then closes the service (the run is left interrupted)', async () => {
  const { emitter, win, appEvents, calls, isClosed } = await started();
  emitter.emit('run.status', { runId: 'r7', status: 'running' });
  const sent = (win.webContents as unknown as { sent: unknown[][] }).sent;
  assert.deepEqual(sent.at(-1), ['studio:event', { name: 'run.status', payload: { runId: 'r7', status: 'running' } }]);
  let prevented = false;
  appEvents.get('before-quit')!({
    preventDefault: () => {
      prevented = true;
    },
  });
  assert.equal(prevented, true);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(
    calls.find((c) => c.method === 'runs.cancel'),
    undefined,
    'not cancelled by the user: the service marks it interrupted',
  );
  assert.equal(isClosed(), true);
});

test('the preload exposes exactly { call, on, pickFolder, pickFile, platform } and refuses unknown methods', async () => {
  const exposed: Record<string, unknown> = {};
  const invoked: unknown[][] = [];
  const listeners = new Map<string, (e: unknown, ...a: unknown[]) => void>();
  const bridge = {
    exposeInMainWorld: (k: string, v: unknown) => {
      exposed[k] = v;
    },
  };
  const ipcRenderer = {
    invoke: async (...a: unknown[]) => {
      invoked.push(a);
      return a[0] === 'studio:call'
        ? a[1] === 'runs.get'
          ? {
              ok: false,
              error: {
                code: 'bad-params',
                message: 'runId: expected string',
                issues: [{ path: 'runId', message: 'x' }],
              },
            }
          : { ok: true, result: 42 }
        : '/picked';
    },
    on: (c: string, l: (e: unknown, ...a: unknown[]) => void) => void listeners.set(c, l),
    removeListener: (c: string) => void listeners.delete(c),
  };
  exposeStudio(bridge, ipcRenderer, Object.keys(METHODS), 'linux');
  assert.deepEqual(Object.keys(exposed), ['studio']);
  const s = exposed.studio as Record<string, unknown> & {
    call: (m: string, p?: unknown) => Promise<unknown>;
    on: (e: string, f: (p: unknown) => void) => () => void;
  };
  assert.deepEqual(Object.keys(s).sort(), ['call', 'on', 'pickFile', 'pickFolder', 'platform']);
  assert.equal(s.platform, 'linux');
  assert.deepEqual(await s.call('app.info'), { result: 42 });
  assert.equal(((await s.call('runs.get', { runId: 1 })) as { error: { code: string } }).error.code, 'bad-params');
  const before = invoked.length;
  assert.match(((await s.call('shell.exec', {})) as { error: { message: string } }).error.message, /unknown method/);
  assert.match(((await s.call('constructor', {})) as { error: { message: string } }).error.message, /unknown method/);
  assert.equal(invoked.length, before, 'refused before sending');
  const got: unknown[] = [];
  const off = s.on('run.progress', (p) => got.push(p));
  listeners.get('studio:event')!({ sender: 'secret' }, { name: 'run.progress', payload: { step: 1 } });
  listeners.get('studio:event')!({}, { name: 'run.log', payload: { line: 'x' } });
  assert.deepEqual(got, [{ step: 1 }]);
  off();
  assert.equal(listeners.size, 0);
  assert.throws(() => s.on('ipc.anything', () => {}), /unknown event/);
  assert.equal(await (s.pickFolder as () => Promise<string>)(), '/picked');
  // No ipcRenderer, no require, no electron objects anywhere in the exposed object.
  assert.ok(!Object.values(s).some((v) => v === ipcRenderer || v === bridge));
});

test("the utilityProcess trainer host speaks trainer-process.ts's protocol", async () => {
  const posted: unknown[] = [];
  const handlers = new Map<string, (a: unknown) => void>();
  const child: UtilityChildLike = {
    pid: 123,
    postMessage: (m) => void posted.push(m),
    on: ((e: string, l: (a: unknown) => void) => void handlers.set(e, l)) as UtilityChildLike['on'],
    kill: () => true,
  };
  const start = utilityTrainer({ fork: () => child }, '/x/trainer.cjs');
  const events: unknown[] = [];
  const job = start({} as never, { train: [] }, (e) => events.push(e));
  assert.equal(job.pid, 123);
  job.pause();
  assert.deepEqual(posted, [], 'nothing is sent before the trainer says it is ready');
  handlers.get('message')!({ kind: 'ready' });
  assert.deepEqual(posted, [
    { kind: 'request', id: 0, name: 'train', params: { config: {}, data: { train: [] } } },
    { kind: 'command', name: 'pause', params: undefined },
  ]);
  handlers.get('message')!({ kind: 'event', name: 'train', payload: { type: 'step' } });
  job.cancel();
  assert.deepEqual(posted[2], { kind: 'command', name: 'cancel', params: undefined });
  handlers.get('message')!({ kind: 'reply', id: 0, result: { status: 'cancelled' } });
  assert.deepEqual(await job.result, { status: 'cancelled' });
  assert.deepEqual(events, [{ type: 'step' }]);
  // A failed run comes back with its message; a trainer that dies rejects the run and takes no more commands.
  const job2 = start({} as never, { train: [] });
  handlers.get('message')!({ kind: 'ready' });
  handlers.get('message')!({ kind: 'failure', id: 0, error: { name: 'Error', message: 'no such model' } });
  await assert.rejects(job2.result, /^Error: no such model$/);
  const job3 = start({} as never, { train: [] });
  handlers.get('exit')!(9);
  await assert.rejects(job3.result, /ended without a result \(exit code 9\); resume the run from its last checkpoint/);
  const sent = posted.length;
  job3.cancel();
  assert.equal(posted.length, sent);
});

test('the utility trainer of a run that may use CUDA gets the CUDA libraries on its loader path; a CPU run inherits', () => {
  const seen: ({ env?: Record<string, string | undefined> } | undefined)[] = [];
  const child = { pid: 1, postMessage: () => {}, on: () => child, kill: () => true } as unknown as UtilityChildLike;
  const start = utilityTrainer({ fork: (_m, _a, options) => (seen.push(options), child) }, '/x/trainer.cjs');
  start({ device: 'cpu' } as never, { train: [] });
  start({ device: 'auto' } as never, { train: [] });
  assert.equal(seen[0]?.env, undefined);
  const env = seen[1]?.env;
  assert.ok(env, 'an auto run gets an environment of its own');
  assert.equal(env.PATH, process.env.PATH, 'built from this process environment');
  const want = cudaProcessEnv(process.env).LD_LIBRARY_PATH;
  assert.equal(env.LD_LIBRARY_PATH, want);
});

test('electron-builder config: native modules unpacked, rebuilt at packaging, no publishing, four targets', () => {
  const c = JSON.parse(readFileSync(new URL('../build/electron-builder.json', import.meta.url), 'utf8'));
  assert.equal(c.productName, 'Delta Studio');
  assert.ok(c.asarUnpack.some((p: string) => p.includes('onnxruntime-node')));
  assert.ok(c.asarUnpack.some((p: string) => p.includes('better-sqlite3')));
  assert.ok(c.asarUnpack.includes('**/*.node'));
  assert.equal(c.npmRebuild, true);
  assert.equal(c.publish, null);
  assert.deepEqual(c.linux.target, ['AppImage', 'deb']);
  assert.deepEqual(c.win.target, ['nsis']);
  assert.deepEqual(c.mac.target, ['dmg']);
  assert.equal(c.linux.category, 'Development');
  const png = readFileSync(new URL('../build/icon.png', import.meta.url));
  assert.equal(png.readUInt32BE(16), 512);
  assert.equal(png.readUInt32BE(20), 512);
});

test('the afterPack hook flips the fuses: no RunAsNode, no NODE_OPTIONS or inspect flags, app only from its asar', async () => {
  const c = JSON.parse(readFileSync(new URL('../build/electron-builder.json', import.meta.url), 'utf8'));
  assert.equal(c.afterPack, 'build/after-pack.cjs');
  const require = createRequire(import.meta.url);
  const hook = require('../build/after-pack.cjs') as { fuseSettings(p: string): Record<string | number, unknown> };
  const { FuseV1Options } = await import('@electron/fuses');
  for (const platform of ['linux', 'win32', 'darwin']) {
    const f = hook.fuseSettings(platform);
    assert.equal(f[FuseV1Options.RunAsNode], false);
    assert.equal(f[FuseV1Options.EnableNodeOptionsEnvironmentVariable], false);
    assert.equal(f[FuseV1Options.EnableNodeCliInspectArguments], false);
    assert.equal(f[FuseV1Options.OnlyLoadAppFromAsar], true);
    assert.equal(f[FuseV1Options.GrantFileProtocolExtraPrivileges], false);
    assert.equal(f[FuseV1Options.EnableEmbeddedAsarIntegrityValidation], platform !== 'linux');
  }
});

test('the Electron bundle builds every worker and process the engine starts by name beside it', () => {
  const started = new Set<string>();
  const native = fileURLToPath(new URL('../native', import.meta.url));
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [join(d, e.name)] : [],
    );
  for (const f of walk(native))
    for (const m of readFileSync(f, 'utf8').matchAll(/start(?:Thread|Process)\(import\.meta\.url, '\.\/([\w-]+)'/g))
      started.add(m[1]);
  // The desktop app starts its trainer through Electron's utilityProcess (electron/trainer-host.ts), as `trainer`.
  started.delete('trainer-process');
  assert.deepEqual([...started].sort(), ['session-worker', 'worker']);
  execFileSync(process.execPath, [fileURLToPath(new URL('../build/build-electron.mjs', import.meta.url))], {
    stdio: 'ignore',
  });
  const out = fileURLToPath(new URL('../dist-electron/', import.meta.url));
  for (const name of ['main', 'trainer', 'preload', ...started]) assert.ok(existsSync(join(out, `${name}.cjs`)), name);
  // The resident-state addon beside the bundle, where runtime/resident.ts looks for it from there.
  assert.ok(existsSync(join(out, 'resident/build/resident.node')));
});
