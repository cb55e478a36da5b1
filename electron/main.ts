// The Electron main process as a function of its dependencies: electron's modules and the engine's service are
// injected, so tests drive it with fakes (nothing here can launch Electron). Glue only — the window, its security
// policy, menus, dialogs and one IPC channel that adapts the contract (native/api/contract.ts) to Electron.
import { readFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import {
  ContractError,
  EVENT_NAMES,
  METHODS,
  ACTIVE_STATUSES,
  dispatch,
  type ApiError,
  type EventName,
  type Events,
} from '../native/contract/index.js';
import { isInside } from '../native/files/paths.js';
import type { Service, ServiceOptions } from '../native/api/service.js';
import type { StartTrainer } from '../native/app/index.js';
import type { UtilityProcessLike } from './trainer-host.js';
import type { MenuItemConstructorOptions } from 'electron';
import {
  CALL_CHANNEL,
  EVENT_CHANNEL,
  PICK_FILE_CHANNEL,
  PICK_FOLDER_CHANNEL,
  SHELL_WORKSPACE_EVENT,
} from './channels.js';

export { CALL_CHANNEL, EVENT_CHANNEL, PICK_FILE_CHANNEL, PICK_FOLDER_CHANNEL, SHELL_WORKSPACE_EVENT };

/** Our renderer's origin: renderer/dist served by the `app://` protocol (standard + secure), never file://. */
export const APP_SCHEME = 'app';
export const APP_HOST = 'studio';
export const APP_ORIGIN = `${APP_SCHEME}://${APP_HOST}`;
/** Links the UI may open in the system browser: https only, these hosts only. */
export const EXTERNAL_ALLOW = ['github.com', 'huggingface.co', 'onnxruntime.ai'];

/** No inline script, no eval, nothing remote: the UI is local files; ws/http only for the headless transport's own origin. */
export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'", // Svelte transitions set inline styles
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-src 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const SECURE_WEB_PREFERENCES = {
  contextIsolation: true,
  sandbox: true,
  nodeIntegration: false,
  nodeIntegrationInWorker: false,
  nodeIntegrationInSubFrames: false,
  webSecurity: true,
  allowRunningInsecureContent: false,
  experimentalFeatures: false,
  webviewTag: false,
  navigateOnDragDrop: false,
  spellcheck: false,
} as const;

// The narrow shapes of electron's objects this file uses: the real modules satisfy them, tests pass fakes.
type Listener = (...args: any[]) => unknown; // eslint-disable-line @typescript-eslint/no-explicit-any
export interface WebContentsLike {
  id: number;
  send(channel: string, ...args: unknown[]): void;
  on(event: string, listener: Listener): unknown;
  setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' | 'allow' }): void;
  isDestroyed?(): boolean;
}
/** What a built menu is to this file: something to install. */
export type MenuLike = object;
export interface WindowLike {
  webContents: WebContentsLike;
  loadURL(url: string): Promise<unknown>;
  on(event: string, listener: Listener): unknown;
  isDestroyed(): boolean;
}
export interface SessionLike {
  setPermissionRequestHandler(
    h: ((wc: unknown, permission: string, callback: (granted: boolean) => void) => void) | null,
  ): void;
  setPermissionCheckHandler(h: ((wc: unknown, permission: string) => boolean) | null): void;
  webRequest: {
    onHeadersReceived(
      listener: (
        details: { url: string; responseHeaders?: Record<string, string[] | string> },
        callback: (r: { responseHeaders?: Record<string, string[] | string> }) => void,
      ) => void,
    ): void;
  };
  protocol: { handle(scheme: string, handler: (request: Request) => Response | Promise<Response>): void };
}
export interface IpcMainLike {
  handle(channel: string, listener: (event: IpcEventLike, ...args: unknown[]) => unknown): void;
  removeHandler(channel: string): void;
}
export interface IpcEventLike {
  sender: WebContentsLike;
  senderFrame: { url: string } | null;
}
export interface MenuItemSpec {
  label?: string;
  role?: MenuItemConstructorOptions['role'];
  type?: 'separator' | 'submenu' | 'normal';
  accelerator?: string;
  enabled?: boolean;
  submenu?: MenuItemSpec[];
  click?: () => void;
}
/** The service's surface the shell uses (native/api/service.ts): its handlers, events and close. */
export type ServiceLike = Pick<Service, 'handlers' | 'events' | 'close'>;
/** The app's dependencies; `W` is the window type (Electron's BrowserWindow, or a test's fake). */
export interface AppDeps<W extends WindowLike = WindowLike> {
  app: {
    whenReady(): Promise<unknown>;
    on(event: string, listener: Listener): unknown;
    quit(): void;
    exit(code?: number): void;
    getPath(name: 'userData'): string;
    getVersion(): string;
    isPackaged: boolean;
  };
  BrowserWindow: new (options: Record<string, unknown>) => W;
  ipcMain: IpcMainLike;
  /** Native dialogs, parented to our window (which they take as it is: a BrowserWindow). */
  dialog: {
    showOpenDialog(
      win: W,
      options: {
        properties: ('openFile' | 'openDirectory' | 'createDirectory')[];
        filters?: { name: string; extensions: string[] }[];
        title?: string;
      },
    ): Promise<{ canceled: boolean; filePaths: string[] }>;
    showMessageBox(
      win: W,
      options: {
        type?: 'none' | 'info' | 'error' | 'question' | 'warning';
        buttons: string[];
        defaultId?: number;
        cancelId?: number;
        message: string;
        detail?: string;
      },
    ): Promise<{ response: number }>;
  };
  shell: { openExternal(url: string): Promise<void>; showItemInFolder?(path: string): void };
  Menu: { buildFromTemplate(template: MenuItemSpec[]): MenuLike; setApplicationMenu(menu: MenuLike | null): void };
  protocol: { registerSchemesAsPrivileged(schemes: { scheme: string; privileges: Record<string, boolean> }[]): void };
  session: { defaultSession: SessionLike };
  utilityProcess?: UtilityProcessLike;
  createService: (opts: ServiceOptions) => ServiceLike;
  /** Builds the trainer starter from utilityProcess (electron/trainer-host.ts); optional so tests need none. */
  makeTrainerStarter?: (utilityProcess: UtilityProcessLike) => StartTrainer;
  /** renderer/dist (the built UI) and the bundled preload script. */
  rendererDir: string;
  preloadPath: string;
  platform?: NodeJS.Platform;
}

/** Whether a URL is ours: the app:// origin exactly (scheme, host, no port or credentials). */
export function isAppUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === `${APP_SCHEME}:` && u.host === APP_HOST && u.username === '' && u.password === '';
  } catch {
    return false;
  }
}

/** Whether the system browser may open a link: https, an allow-listed host (or its subdomain), no credentials. */
export function isAllowedExternal(url: string): boolean {
  try {
    const u = new URL(url);
    if (u.protocol !== 'https:' || u.username || u.password || u.port) return false;
    return EXTERNAL_ALLOW.some((h) => u.hostname === h || u.hostname.endsWith(`.${h}`));
  } catch {
    return false;
  }
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.ico': 'image/x-icon',
};

/** The app:// handler: files of renderer/dist only (no traversal), with the CSP on every response. */
export function serveRenderer(rendererDir: string): (request: Request) => Promise<Response> {
  const root = resolve(rendererDir);
  return async (request) => {
    const u = new URL(request.url);
    if (u.host !== APP_HOST) return new Response('not found', { status: 404 });
    let rel = decodeURIComponent(u.pathname).replace(/^\/+/, '');
    if (rel === '') rel = 'index.html';
    const file = join(root, rel);
    if (rel.includes('\0') || !isInside(root, file)) return new Response('forbidden', { status: 403 });
    try {
      const body = await readFile(file);
      return new Response(body, {
        headers: {
          'content-type': MIME[extname(file)] ?? 'application/octet-stream',
          'content-security-policy': CSP,
          'x-content-type-options': 'nosniff',
        },
      });
    } catch {
      return new Response('not found', { status: 404 });
    }
  };
}

/** Contract errors cross IPC as data ({error}); Electron would otherwise flatten a thrown error to its message. */
function toApiError(e: unknown): ApiError {
  if (e instanceof ContractError) return e.error;
  const err = e as { error?: ApiError; message?: string };
  if (err && typeof err.error === 'object' && typeof err.error.code === 'string') return err.error;
  return { code: 'failed', message: err?.message ?? String(e) };
}

export type CallResult = { ok: true; result: unknown } | { ok: false; error: ApiError };

export interface StudioApp {
  /** Resolves with the window once the app is ready. */
  ready: Promise<WindowLike>;
  /** The `studio:call` handler (exported for tests). */
  handleCall(event: IpcEventLike, method: unknown, params: unknown): Promise<CallResult>;
  isTrustedSender(event: IpcEventLike): boolean;
  /** Runs known to be queued, running or paused (from run.status events). */
  activeRuns(): string[];
}

/** Must run before `app.whenReady()`: app:// behaves like https (standard origin, secure context, fetch allowed). */
export function registerScheme(protocol: AppDeps['protocol']): void {
  protocol.registerSchemesAsPrivileged([
    { scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true, codeCache: true } },
  ]);
}

export function createApp<W extends WindowLike>(deps: AppDeps<W>): StudioApp {
  const { app, ipcMain, dialog, shell, Menu } = deps;
  registerScheme(deps.protocol);
  let win: W | undefined;
  let service: ServiceLike | undefined;
  const active = new Map<string, string>();
  let quitting = false;

  const isTrustedSender = (event: IpcEventLike): boolean =>
    !!win &&
    !win.isDestroyed() &&
    event.sender === win.webContents &&
    !!event.senderFrame &&
    isAppUrl(event.senderFrame.url);

  const send = (name: string, payload: unknown): void => {
    if (win && !win.isDestroyed() && !win.webContents.isDestroyed?.())
      win.webContents.send(EVENT_CHANNEL, { name, payload });
  };

  const call = (method: string, params: unknown): Promise<unknown> => dispatch(service?.handlers ?? {}, method, params);

  const handleCall = async (event: IpcEventLike, method: unknown, params: unknown): Promise<CallResult> => {
    if (!isTrustedSender(event))
      return {
        ok: false,
        error: { code: 'unauthorized', message: 'refused: the call did not come from the Delta Studio window' },
      };
    if (typeof method !== 'string')
      return { ok: false, error: { code: 'unknown-method', message: 'the method name must be a string' } };
    try {
      return { ok: true, result: await call(method, params) };
    } catch (e) {
      return { ok: false, error: toApiError(e) };
    }
  };

  const pick = async (event: IpcEventLike, kind: 'folder' | 'file', filters?: unknown): Promise<string | null> => {
    if (!isTrustedSender(event) || !win) return null;
    const f = Array.isArray(filters)
      ? filters
          .filter(
            (x): x is { name: string; extensions: string[] } =>
              !!x &&
              typeof x.name === 'string' &&
              Array.isArray(x.extensions) &&
              x.extensions.every((e: unknown) => typeof e === 'string' && /^[\w*]{1,16}$/.test(e)),
          )
          .slice(0, 16)
      : undefined;
    const r = await dialog.showOpenDialog(win, {
      properties: kind === 'folder' ? ['openDirectory', 'createDirectory'] : ['openFile'],
      filters: f,
    });
    return r.canceled ? null : (r.filePaths[0] ?? null);
  };

  const openWorkspace = async (method: 'workspace.create' | 'workspace.open', path?: string): Promise<void> => {
    const folder =
      path ??
      (win
        ? (
            await dialog.showOpenDialog(win, {
              properties: ['openDirectory', 'createDirectory'],
              title: method === 'workspace.create' ? 'New workspace' : 'Open workspace',
            })
          ).filePaths[0]
        : undefined);
    if (!folder) return;
    try {
      const result = await call(method, { path: folder });
      send(SHELL_WORKSPACE_EVENT, { path: folder, result });
      await buildMenu();
    } catch (e) {
      if (win)
        await dialog.showMessageBox(win, {
          type: 'error',
          buttons: ['OK'],
          message: `Could not open ${folder}`,
          detail: toApiError(e).message,
        });
    }
  };

  const buildMenu = async (): Promise<void> => {
    let recent: string[] = [];
    try {
      const r = (await call('workspace.recent', {})) as unknown;
      const list = Array.isArray(r)
        ? r
        : ((r as { recent?: unknown[]; workspaces?: unknown[] })?.recent ??
          (r as { workspaces?: unknown[] })?.workspaces ??
          []);
      recent = list
        .map((x) => (typeof x === 'string' ? x : (x as { path?: string })?.path))
        .filter((x): x is string => typeof x === 'string')
        .slice(0, 10);
    } catch {
      // no recent list yet: the submenu stays empty
    }
    const template: MenuItemSpec[] = [
      {
        label: 'File',
        submenu: [
          { label: 'New Workspace…', accelerator: 'CmdOrCtrl+N', click: () => void openWorkspace('workspace.create') },
          { label: 'Open Workspace…', accelerator: 'CmdOrCtrl+O', click: () => void openWorkspace('workspace.open') },
          {
            label: 'Recent Workspaces',
            submenu: recent.length
              ? recent.map((p) => ({ label: p, click: () => void openWorkspace('workspace.open', p) }))
              : [{ label: 'None', enabled: false }],
          },
          { type: 'separator' },
          { role: 'quit', label: 'Quit' },
        ],
      },
      {
        label: 'Edit',
        submenu: [
          { role: 'undo' },
          { role: 'redo' },
          { type: 'separator' },
          { role: 'cut' },
          { role: 'copy' },
          { role: 'paste' },
          { role: 'selectAll' },
        ],
      },
      {
        label: 'View',
        submenu: [
          { role: 'reload' },
          { role: 'toggleDevTools' },
          { type: 'separator' },
          { role: 'resetZoom' },
          { role: 'zoomIn' },
          { role: 'zoomOut' },
          { role: 'togglefullscreen' },
        ],
      },
      {
        label: 'Help',
        submenu: [
          { label: 'Delta Studio on GitHub', click: () => void openExternal('https://github.com/') },
          {
            label: 'GPU setup (onnxruntime CUDA)',
            click: () =>
              void openExternal('https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html'),
          },
        ],
      },
    ];
    Menu.setApplicationMenu(Menu.buildFromTemplate(template));
  };

  const openExternal = async (url: string): Promise<boolean> => {
    if (!isAllowedExternal(url)) return false;
    await shell.openExternal(url);
    return true;
  };

  const hardenSession = (ses: SessionLike): void => {
    // The UI needs no camera, notifications, clipboard-read, geolocation…: every request and check says no.
    ses.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
    ses.setPermissionCheckHandler(() => false);
    ses.webRequest.onHeadersReceived((details, callback) => {
      const headers = { ...(details.responseHeaders ?? {}) };
      if (details.url.startsWith(`${APP_SCHEME}:`) || details.url.startsWith('file:'))
        headers['Content-Security-Policy'] = [CSP];
      callback({ responseHeaders: headers });
    });
    ses.protocol.handle(APP_SCHEME, serveRenderer(deps.rendererDir));
  };

  const hardened = new WeakSet<WebContentsLike>();
  const hardenContents = (wc: WebContentsLike): void => {
    if (hardened.has(wc)) return;
    hardened.add(wc);
    // Same-origin navigation (the SPA's own pages) only; everything else is refused, allow-listed links go to the browser.
    const guard = (event: { preventDefault(): void }, url: string): void => {
      if (isAppUrl(url)) return;
      event.preventDefault();
      void openExternal(url);
    };
    wc.on('will-navigate', guard);
    wc.on('will-redirect', guard);
    wc.on('will-attach-webview', (event: { preventDefault(): void }) => event.preventDefault());
    wc.setWindowOpenHandler(({ url }) => {
      void openExternal(url);
      return { action: 'deny' };
    });
  };

  const trackRuns = (name: EventName, payload: unknown): void => {
    if (name !== 'run.status') return;
    const p = payload as Events['run.status'];
    if (ACTIVE_STATUSES.includes(p.status)) active.set(p.runId, p.status);
    else active.delete(p.runId);
  };

  app.on('before-quit', (event: { preventDefault(): void }) => {
    if (quitting) return;
    event.preventDefault();
    void (async () => {
      // Without a window there is no one to ask: quitting leaves the runs interrupted, resumable.
      if (active.size > 0 && win) {
        const n = active.size;
        const r = await dialog.showMessageBox(win, {
          type: 'question',
          buttons: ['Stop and quit', 'Keep training'],
          defaultId: 1,
          cancelId: 1,
          message: `${n} training run${n > 1 ? 's are' : ' is'} still going.`,
          detail:
            'Quitting stops after the current step and keeps the last checkpoint: the run is marked interrupted; resume it later from the Runs page.',
        });
        if (r.response !== 0) return;
      }
      // Closing the service stops a training run after its step and records it (and any queued one) as
      // interrupted: the Runs page offers to resume it next time.
      quitting = true;
      try {
        await service?.close();
      } finally {
        app.quit();
      }
    })();
  });
  app.on('window-all-closed', () => app.quit());
  app.on('web-contents-created', (_e: unknown, wc: WebContentsLike) => hardenContents(wc));

  const ready = (async (): Promise<W> => {
    await app.whenReady();
    hardenSession(deps.session.defaultSession);
    const startTrainer =
      deps.utilityProcess && deps.makeTrainerStarter ? deps.makeTrainerStarter(deps.utilityProcess) : undefined;
    const dataDir = app.getPath('userData');
    const showInFolder = shell.showItemInFolder ? (p: string) => shell.showItemInFolder!(p) : undefined;
    service = deps.createService({ stateDir: dataDir, dataDir, transport: 'ipc', showInFolder, startTrainer });
    for (const name of EVENT_NAMES) {
      service.events.on(name, (payload) => {
        trackRuns(name, payload);
        send(name, payload);
      });
    }
    ipcMain.handle(CALL_CHANNEL, (event, method, params) => handleCall(event, method, params));
    ipcMain.handle(PICK_FOLDER_CHANNEL, (event) => pick(event, 'folder'));
    ipcMain.handle(PICK_FILE_CHANNEL, (event, filters) => pick(event, 'file', filters));
    win = new deps.BrowserWindow({
      width: 1280,
      height: 820,
      minWidth: 900,
      minHeight: 600,
      show: true,
      title: 'Delta Studio',
      backgroundColor: '#101418',
      webPreferences: { ...SECURE_WEB_PREFERENCES, preload: deps.preloadPath },
    });
    hardenContents(win.webContents); // web-contents-created does it too; this one cannot be missed
    win.on('closed', () => {
      win = undefined;
    });
    await buildMenu();
    await win.loadURL(`${APP_ORIGIN}/index.html`);
    return win;
  })();

  return { ready, handleCall, isTrustedSender, activeRuns: () => [...active.keys()] };
}

/** Every method the IPC channel serves: the contract's, nothing more. */
export const METHOD_NAMES = Object.keys(METHODS);
