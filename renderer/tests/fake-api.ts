// A fake Api for tests: scripted method handlers and events emitted by hand.
import type { Api } from '../src/lib/api.js';
import { ApiCallError } from '../src/lib/api.js';
import type { ApiError, EventName, Events, MethodName } from '../src/lib/types.js';

type Handler = (params: Record<string, unknown>) => unknown;

export interface FakeApi extends Api {
  calls: { method: string; params: unknown }[];
  emit<E extends EventName>(event: E, data: Events[E]): void;
  handle(method: MethodName, fn: Handler | unknown): void;
}

export function fakeApi(handlers: Partial<Record<MethodName, Handler | unknown>> = {}): FakeApi {
  const table = new Map<string, Handler | unknown>(Object.entries(handlers));
  const listeners = new Map<string, Set<(d: unknown) => void>>();
  const calls: { method: string; params: unknown }[] = [];
  return {
    transport: 'http',
    calls,
    async call(method, params) {
      calls.push({ method, params });
      if (!table.has(method))
        throw new ApiCallError({ code: 'unknown-method', message: `fake: no handler for ${method}` });
      const h = table.get(method);
      const r = typeof h === 'function' ? await (h as Handler)((params ?? {}) as Record<string, unknown>) : h;
      if (r && typeof r === 'object' && 'error' in r && (r as { error: ApiError }).error?.code)
        throw new ApiCallError((r as { error: ApiError }).error);
      return r as never;
    },
    on(event, fn) {
      let s = listeners.get(event);
      if (!s) listeners.set(event, (s = new Set()));
      s.add(fn as (d: unknown) => void);
      return () => s.delete(fn as (d: unknown) => void);
    },
    emit(event, data) {
      for (const fn of listeners.get(event) ?? []) fn(data);
    },
    handle(method, fn) {
      table.set(method, fn);
    },
  };
}
