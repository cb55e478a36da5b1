// Starting a worker thread or child process from TypeScript sources or built JavaScript, and the Port over each
// carrier: a Worker and its parentPort, a forked child and its process.send, an Electron utility process's parentPort.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parentPort, Worker } from 'node:worker_threads';
import type { Port, PortEnd } from './protocol.js';

/**
 * The module `name` beside `base` (the caller's import.meta.url) in the caller's own form: `.ts` when it runs from
 * sources (tests, the CLI through tsx), else the built `.js` (or `.cjs` beside a CommonJS bundle).
 */
function entryBeside(base: string, name: string): { url: URL; fromSource: boolean } {
  const ext = /\.[cm]?[jt]s$/.exec(new URL(base).pathname)?.[0] ?? '.js';
  return { url: new URL(`${name}${ext}`, base), fromSource: ext.endsWith('ts') };
}

/** A worker thread running the module `name` beside `base`; from sources it registers tsx's loader first. */
export function startThread(base: string, name: string): Worker {
  const { url, fromSource } = entryBeside(base, name);
  if (!fromSource) return new Worker(url);
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return new Worker(`import(${tsx}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); });`, {
    eval: true,
  });
}

/** A child process running the module `name` beside `base`, with an IPC channel; from sources through tsx. */
export function startProcess(base: string, name: string, opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const { url, fromSource } = entryBeside(base, name);
  return fork(fileURLToPath(url), [], {
    // tsx by absolute URL: the user's working folder need not hold our node_modules.
    execArgv: fromSource ? ['--import', import.meta.resolve('tsx')] : [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    ...(opts.env ? { env: opts.env } : {}),
  });
}

/** Calls `listener` once, with the first way the other side ended. */
function once(listener: (end: PortEnd) => void): (end: PortEnd) => void {
  let called = false;
  return (end) => {
    if (!called) listener(end);
    called = true;
  };
}

/** Sending to the other end of a thread: postMessage copies at once, so the message has left when it returns. */
function postTo(target: Pick<Worker, 'postMessage'>): Port['send'] {
  return (m, transfer = [], sent) => {
    target.postMessage(m, [...new Set(transfer)]);
    sent?.();
  };
}

export function threadPort(worker: Worker): Port {
  return {
    send: postTo(worker),
    onMessage: (l) => void worker.on('message', l),
    onEnd: (l) => {
      const end = once(l);
      worker.on('error', (error) => end({ error }));
      worker.on('exit', (code) => end({ code }));
    },
    ref: () => worker.ref(),
    unref: () => worker.unref(),
    close: async () => void (await worker.terminate()),
  };
}

export function processPort(child: ChildProcess): Port {
  return {
    // A child that is gone reports it through 'exit'; the failed send itself says nothing more.
    send: (m, _transfer, sent) => void child.send(m as object, (err) => !err && sent?.()),
    onMessage: (l) => void child.on('message', l),
    onEnd: (l) => {
      const end = once(l);
      child.on('error', (error) => end({ error }));
      child.on('exit', (code, signal) => end({ code, signal }));
    },
  };
}

/** The Electron utility process's port to its parent (Electron's own; native/ never imports electron). */
interface UtilityParentPort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (e: { data: unknown }) => void): unknown;
}

/** The side that started this thread or process, whichever carrier it used. */
export function startedBy(): Port {
  if (parentPort) {
    const port = parentPort;
    return {
      send: postTo(port),
      onMessage: (l) => void port.on('message', l),
      // A thread ends with its parent; there is nobody to tell.
      onEnd: () => {},
    };
  }
  const utility = (process as { parentPort?: UtilityParentPort }).parentPort;
  if (utility)
    return {
      send: (m, _transfer, sent) => {
        utility.postMessage(m);
        // postMessage is queued, not flushed: give the message a turn of the loop before a callback that exits.
        if (sent) setTimeout(sent, 50);
      },
      onMessage: (l) => void utility.on('message', (e) => l(e.data)),
      onEnd: () => {},
    };
  if (!process.send) throw new Error('this module runs in a worker thread or child process started by Delta Studio');
  const ends: ((end: PortEnd) => void)[] = [];
  let gone = false;
  const left = (): void => {
    if (gone) return;
    gone = true;
    for (const l of ends) l({ code: null });
  };
  process.on('disconnect', left);
  return {
    // A failed send (EPIPE, ERR_IPC_CHANNEL_CLOSED) means the parent is gone: given a callback, Node reports it there
    // instead of as an uncaught 'error' that ends this process with a stack trace on the terminal.
    send: (m, _transfer, sent) => {
      if (!gone) process.send!(m, undefined, undefined, (err: Error | null) => (err ? left() : sent?.()));
    },
    onMessage: (l) => void process.on('message', l),
    onEnd: (l) => {
      if (gone) l({ code: null });
      else ends.push(l);
    },
  };
}
