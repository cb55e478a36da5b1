// One typed message layer for the engine's worker threads and child processes. A protocol names what the starting
// side may ask (requests, answered by id), tell (one-way commands) and hear (events streamed back); connect() is the
// starting side, serve() the started one, and a Port carries the messages whatever the carrier (ports.ts).
import { EndedError, errorFromData, errorToData, type ErrorClasses, type ErrorData } from './errors.js';

/** What one use of a worker or child process says, e.g. `{ requests: { run: { params: …; result: … } }, … }`. */
export type Protocol = {
  requests: Record<string, { params: unknown; result: unknown }>;
  commands: Record<string, unknown>;
  events: Record<string, unknown>;
};

/** How the other side ended: it exited (code or signal), or failed before it could (a thread's uncaught error). */
export type PortEnd = { code: number | null; signal?: string | null } | { error: Error };

/** One side's view of the other: a worker thread, a forked child, an Electron utility process, or their parent. */
export interface Port {
  /** `sent` is called once the message has left this side (a process may exit then without losing it). */
  send(message: unknown, transfer?: readonly ArrayBuffer[], sent?: () => void): void;
  onMessage(listener: (message: unknown) => void): void;
  /** Called once, when the other side is gone. */
  onEnd(listener: (end: PortEnd) => void): void;
  /** Whether the other side keeps this process alive (a thread only: an idle one must not, a busy one must). */
  ref?(): void;
  unref?(): void;
  /** Ends the other side (a thread is terminated). */
  close?(): Promise<void>;
}

type Wire =
  | { kind: 'ready' }
  | { kind: 'request'; id: number; name: string; params: unknown }
  | { kind: 'reply'; id: number; result: unknown }
  | { kind: 'failure'; id: number; error: ErrorData }
  | { kind: 'command'; name: string; params: unknown }
  | { kind: 'event'; name: string; payload: unknown };

type Key<T> = keyof T & string;
/** A command or event without a payload takes no argument. */
type Payload<T> = [T] extends [void] ? [] : [T];

export interface Connection<P extends Protocol> {
  request<R extends Key<P['requests']>>(
    name: R,
    params: P['requests'][R]['params'],
    transfer?: readonly ArrayBuffer[],
  ): Promise<P['requests'][R]['result']>;
  /** One-way; dropped once the other side is gone (there is nothing left to tell). */
  command<C extends Key<P['commands']>>(name: C, ...params: Payload<P['commands'][C]>): void;
  on<E extends Key<P['events']>>(name: E, listener: (payload: P['events'][E]) => void): void;
  /** Ends the other side; requests still waiting are rejected. */
  close(): Promise<void>;
}

export interface ConnectOptions {
  /** Error classes rebuilt by name when a request fails on the other side. */
  errors?: ErrorClasses;
  /** The message of the EndedError every waiting (and later) request is rejected with when the other side exits. */
  ended?: (end: { code: number | null; signal?: string | null }) => string;
}

type Waiter = { resolve: (result: unknown) => void; reject: (e: Error) => void };

/** The starting side: requests wait for the other side's "ready", then are answered by id. */
export function connect<P extends Protocol>(port: Port, opts: ConnectOptions = {}): Connection<P> {
  let next = 0;
  let ready = false;
  const queued: [Wire, readonly ArrayBuffer[]][] = [];
  const waiting = new Map<number, Waiter>();
  const listeners = new Map<string, ((payload: unknown) => void)[]>();
  let gone: Error | undefined;
  const send = (m: Wire, transfer: readonly ArrayBuffer[] = []): void => {
    if (ready) port.send(m, transfer);
    else queued.push([m, transfer]);
  };
  const settle = (id: number): Waiter | undefined => {
    const w = waiting.get(id);
    waiting.delete(id);
    if (w && waiting.size === 0) port.unref?.();
    return w;
  };
  port.onMessage((raw) => {
    const m = raw as Wire;
    if (m.kind === 'ready') {
      ready = true;
      for (const [q, transfer] of queued.splice(0)) port.send(q, transfer);
    } else if (m.kind === 'reply') settle(m.id)?.resolve(m.result);
    else if (m.kind === 'failure') settle(m.id)?.reject(errorFromData(m.error, opts.errors));
    else if (m.kind === 'event') for (const l of listeners.get(m.name) ?? []) l(m.payload);
  });
  port.onEnd((end) => {
    if (gone) return;
    gone =
      'error' in end
        ? end.error
        : new EndedError(opts.ended?.(end) ?? `the other side exited (code ${end.code})`, end.code, end.signal ?? null);
    for (const w of waiting.values()) w.reject(gone);
    waiting.clear();
  });
  return {
    request: (name, params, transfer) => {
      if (gone) return Promise.reject(gone);
      const id = next++;
      if (waiting.size === 0) port.ref?.();
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve: resolve as Waiter['resolve'], reject });
        send({ kind: 'request', id, name, params }, transfer);
      });
    },
    command: (name, ...params) => {
      if (!gone) send({ kind: 'command', name, params: params[0] });
    },
    on: (name, listener) => {
      listeners.set(name, [...(listeners.get(name) ?? []), listener as (payload: unknown) => void]);
    },
    close: async () => {
      await port.close?.();
    },
  };
}

type Handlers<P extends Protocol> = {
  requests: {
    [R in Key<P['requests']>]: (
      params: P['requests'][R]['params'],
    ) => P['requests'][R]['result'] | Promise<P['requests'][R]['result']>;
  };
  commands?: { [C in Key<P['commands']>]: (...params: Payload<P['commands'][C]>) => void };
};

export interface Server<P extends Protocol> {
  /** Streams an event to the starting side; dropped once that side is gone. */
  emit<E extends Key<P['events']>>(name: E, ...payload: Payload<P['events'][E]>): void;
  /** Settles when the starting side is gone (killed, or it closed the channel). */
  readonly gone: Promise<void>;
}

export interface ServeOptions {
  /** Called once a request's answer (or failure) has left, e.g. to end a process that does one job. */
  answered?: (name: string, ok: boolean) => void;
}

// Results that move their buffers to the other side instead of copying them (see transferring()).
const moving = new WeakMap<object, readonly ArrayBuffer[]>();

/** Marks a request's result so that `buffers` move to the other side instead of being copied. */
export function transferring<T extends object>(result: T, buffers: readonly ArrayBuffer[]): T {
  moving.set(result, buffers);
  return result;
}

/** The started side: answers requests (each as it comes, by id), runs commands, and says "ready" once listening. */
export function serve<P extends Protocol>(port: Port, handlers: Handlers<P>, opts: ServeOptions = {}): Server<P> {
  let ended = false;
  const gone = new Promise<void>((resolve) =>
    port.onEnd(() => {
      ended = true;
      resolve();
    }),
  );
  const send = (m: Wire, transfer?: readonly ArrayBuffer[], sent?: () => void): void => {
    if (!ended) port.send(m, transfer, sent);
  };
  const requests = handlers.requests as Record<string, (params: unknown) => unknown>;
  const commands = (handlers.commands ?? {}) as Record<string, (params?: unknown) => void>;
  port.onMessage(async (raw) => {
    const m = raw as Wire;
    if (m.kind === 'command') {
      if (Object.hasOwn(commands, m.name)) commands[m.name](m.params);
      return;
    }
    if (m.kind !== 'request') return;
    let reply: Wire;
    let transfer: readonly ArrayBuffer[] | undefined;
    try {
      if (!Object.hasOwn(requests, m.name)) throw new Error(`unknown request "${m.name}"`);
      const result = await requests[m.name](m.params);
      reply = { kind: 'reply', id: m.id, result };
      if (result instanceof Object) transfer = moving.get(result);
    } catch (e) {
      reply = { kind: 'failure', id: m.id, error: errorToData(e) };
    }
    send(reply, transfer, () => opts.answered?.(m.name, reply.kind === 'reply'));
  });
  port.send({ kind: 'ready' } satisfies Wire);
  return {
    emit: (name, ...payload) => send({ kind: 'event', name, payload: payload[0] }),
    gone,
  };
}
