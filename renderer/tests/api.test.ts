import { describe, expect, it, vi } from 'vitest';
import { ApiCallError, createApi, httpApi, readToken } from '../src/lib/api.js';

describe('api client', () => {
  it('uses window.studio when present', async () => {
    const bridge = { call: vi.fn(async () => ({ result: [{ id: 1 }] })), on: vi.fn(() => () => {}) };
    const api = createApi({ studio: bridge });
    expect(api.transport).toBe('ipc');
    expect(await api.call('models.list', {})).toEqual([{ id: 1 }]);
    expect(bridge.call).toHaveBeenCalledWith('models.list', {});
    const fn = () => {};
    api.on('run.status', fn);
    expect(bridge.on).toHaveBeenCalledWith('run.status', fn);
  });

  it('turns a bridge error into an ApiCallError with the ApiError', async () => {
    const api = createApi({
      studio: { call: async () => ({ error: { code: 'not-found', message: 'no run 7' } }), on: () => () => {} },
    });
    await expect(api.call('runs.get', { runId: '7' })).rejects.toMatchObject({
      error: { code: 'not-found', message: 'no run 7' },
    });
  });

  it('uses HTTP POST /api/<method> with the token otherwise', async () => {
    const store = new Map<string, string>();
    const storage = {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => void store.set(k, v),
    };
    const fetch = vi.fn(async () => new Response(JSON.stringify({ result: { version: '0.1.0' } }), { status: 200 }));
    const api = httpApi({
      location: { href: 'http://h:7860/?token=abc' },
      storage,
      fetch: fetch as unknown as typeof globalThis.fetch,
      WebSocket: undefined,
    });
    expect(api.transport).toBe('http');
    expect(await api.call('app.info', {})).toEqual({ version: '0.1.0' });
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('http://h:7860/api/app.info');
    expect(init.method).toBe('POST');
    expect((init.headers as Record<string, string>).authorization).toBe('Bearer abc');
    expect(store.get('delta-studio.token')).toBe('abc');
    expect(readToken({ href: 'http://h:7860/' }, storage)).toBe('abc');
  });

  it('createApi without window.studio is HTTP', () => {
    expect(createApi({}).transport).toBe('http');
  });

  it('HTTP errors become ApiErrors', async () => {
    const fetch = async () =>
      new Response(
        JSON.stringify({
          error: { code: 'bad-params', message: 'lr: too big', issues: [{ path: 'lr', message: 'too big' }] },
        }),
        { status: 400 },
      );
    const api = httpApi({
      location: { href: 'http://h/' },
      fetch: fetch as typeof globalThis.fetch,
      WebSocket: undefined,
    });
    const err = await api.call('runs.start', {} as never).catch((e) => e);
    expect(err).toBeInstanceOf(ApiCallError);
    expect(err.error.issues[0].path).toBe('lr');
  });

  it('events arrive over the WebSocket and it reconnects', async () => {
    vi.useFakeTimers();
    const sockets: FakeWS[] = [];
    class FakeWS {
      onopen?: () => void;
      onmessage?: (m: { data: string }) => void;
      onclose?: () => void;
      constructor(readonly url: string) {
        sockets.push(this);
      }
    }
    const api = httpApi({
      location: { href: 'http://h:1/?token=t' },
      fetch: (async () => new Response('{}')) as typeof fetch,
      WebSocket: FakeWS as unknown as typeof WebSocket,
      storage: { getItem: () => null, setItem: () => {} },
      reconnectMs: 100,
    });
    const got: unknown[] = [];
    api.on('job.done', (d) => got.push(d));
    expect(sockets[0].url).toBe('ws://h:1/api/events?token=t');
    sockets[0].onmessage!({ data: JSON.stringify({ event: 'job.done', data: { jobId: 'j1' } }) });
    expect(got).toEqual([{ jobId: 'j1' }]);
    sockets[0].onclose!();
    vi.advanceTimersByTime(150);
    expect(sockets.length).toBe(2);
    vi.useRealTimers();
  });
});
