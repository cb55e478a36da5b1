// The one client the UI talks to: Electron's preload bridge (window.studio) when present, otherwise HTTP + WebSocket
// to `delta-studio serve`. Screens and stores only see `Api`; they never know which transport they have.
import type { ApiError, EventName, Events, MethodName, Params, Result } from './types.js';

export type Unsubscribe = () => void;
export interface Api {
  call<M extends MethodName>(method: M, params?: Params<M>): Promise<Result<M>>;
  on<E extends EventName>(event: E, fn: (data: Events[E]) => void): Unsubscribe;
  /** Native folder picker: only the desktop app has one. */
  pickFolder?: () => Promise<string | null>;
  transport: 'ipc' | 'http';
}

/** What electron/preload exposes through contextBridge. */
export interface StudioBridge {
  call(method: string, params: unknown): Promise<{ result: unknown } | { error: ApiError }>;
  on(event: string, fn: (data: unknown) => void): Unsubscribe;
  pickFolder?: () => Promise<string | null>;
}

/** Thrown by `call`: carries the engine's ApiError (code, message that says what to do, issues). */
export class ApiCallError extends Error {
  constructor(readonly error: ApiError) {
    super(error.message);
    this.name = 'ApiCallError';
  }
}

/** Any thrown value as an ApiError, for showing to the user. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiCallError) return e.error;
  if (e && typeof e === 'object' && 'code' in e && 'message' in e) return e as ApiError;
  const message = e instanceof Error ? e.message : String(e);
  return { code: 'failed', message };
}

function unwrap(r: { result: unknown } | { error: ApiError }): never {
  if ('error' in r && r.error) throw new ApiCallError(r.error);
  return (r as { result: unknown }).result as never;
}

export function electronApi(bridge: StudioBridge): Api {
  return {
    transport: 'ipc',
    async call(method, params) {
      return unwrap(await bridge.call(method, params ?? {}));
    },
    on(event, fn) {
      return bridge.on(event, fn as (data: unknown) => void);
    },
    pickFolder: bridge.pickFolder ? () => bridge.pickFolder!() : undefined,
  };
}

export interface HttpOptions {
  /** Origin + path prefix of the server; default: this page's origin. */
  base?: string;
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  location?: { href: string };
  storage?: Pick<Storage, 'getItem' | 'setItem'>;
  reconnectMs?: number;
}

const TOKEN_KEY = 'delta-studio.token';

/** The token: `?token=` in the URL once (then dropped from the address bar), kept in sessionStorage. */
export function readToken(loc: { href: string }, storage?: Pick<Storage, 'getItem' | 'setItem'>): string | null {
  const url = new URL(loc.href);
  const t = url.searchParams.get('token');
  if (t) {
    storage?.setItem(TOKEN_KEY, t);
    return t;
  }
  return storage?.getItem(TOKEN_KEY) ?? null;
}

export function httpApi(opts: HttpOptions = {}): Api {
  const loc = opts.location ?? globalThis.location;
  const storage = opts.storage ?? (typeof sessionStorage !== 'undefined' ? sessionStorage : undefined);
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const WS = opts.WebSocket ?? globalThis.WebSocket;
  const base = (opts.base ?? new URL('.', loc.href).href).replace(/\/$/, '');
  const token = readToken(loc, storage);
  const listeners = new Map<string, Set<(d: unknown) => void>>();
  let socket: WebSocket | null = null;
  let retry: ReturnType<typeof setTimeout> | null = null;
  let delay = opts.reconnectMs ?? 500;

  const connect = (): void => {
    if (socket || !WS) return;
    const u = new URL(base + '/api/events');
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    if (token) u.searchParams.set('token', token);
    const ws = new WS(u.href);
    socket = ws;
    ws.onopen = () => (delay = opts.reconnectMs ?? 500);
    ws.onmessage = (m: MessageEvent) => {
      let msg: { event?: string; data?: unknown };
      try {
        msg = JSON.parse(String(m.data));
      } catch {
        return;
      }
      if (!msg.event) return;
      for (const fn of listeners.get(msg.event) ?? []) fn(msg.data);
    };
    ws.onclose = () => {
      socket = null;
      if (![...listeners.values()].some((s) => s.size)) return;
      retry = setTimeout(() => {
        retry = null;
        connect();
      }, delay);
      delay = Math.min(delay * 2, 10_000);
    };
  };

  return {
    transport: 'http',
    async call(method, params) {
      let res: Response;
      try {
        res = await doFetch(`${base}/api/${method}`, {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
          body: JSON.stringify(params ?? {}),
        });
      } catch (e) {
        throw new ApiCallError({
          code: 'failed',
          message: `The engine did not answer (${(e as Error).message}). Check that \`delta-studio serve\` is running, then retry.`,
        });
      }
      const body = (await res.json().catch(() => null)) as { result?: unknown; error?: ApiError } | null;
      if (body?.error) throw new ApiCallError(body.error);
      if (!res.ok) {
        const code = res.status === 401 || res.status === 403 ? 'unauthorized' : 'failed';
        const hint =
          code === 'unauthorized'
            ? 'Open the address with ?token= that `delta-studio serve` printed.'
            : 'Retry, or check the server log.';
        throw new ApiCallError({ code, message: `HTTP ${res.status} from ${method}. ${hint}` });
      }
      return unwrap({ result: body?.result ?? null });
    },
    on(event, fn) {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      const f = fn as (d: unknown) => void;
      set.add(f);
      if (!socket && !retry) connect();
      return () => {
        set.delete(f);
      };
    },
  };
}

/** The client for this window: the preload bridge in Electron, else HTTP. */
export function createApi(win: { studio?: StudioBridge } = globalThis as { studio?: StudioBridge }): Api {
  return win.studio ? electronApi(win.studio) : httpApi();
}
