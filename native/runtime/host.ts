// Where a session runs: in this thread (tests, CLI one-shots) or in a worker thread, so that onnxruntime's blocking
// run() never stalls a thread that must stay responsive. Both speak the same SessionHandle.
import { Worker } from 'node:worker_threads';
import type { Graph, HostTensor } from '../onnx/graph.js';
import { serialize, type SerializedModel } from '../onnx/serialize.js';
import { checkFeeds, openSession, runSession, type SessionOptions } from './session.js';

export interface SessionHandle {
  readonly device: 'cpu' | 'cuda';
  readonly fallbackReason?: string;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, HostTensor>, fetches?: string[]): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}

export async function openInline(model: Graph | SerializedModel, opts: SessionOptions = {}): Promise<SessionHandle> {
  const s = await openSession(model, opts);
  return {
    device: s.device,
    fallbackReason: s.fallbackReason,
    inputNames: s.inputNames,
    outputNames: s.outputNames,
    run: (feeds, fetches) => runSession(s, feeds, fetches),
    release: () => s.session.release(),
  };
}

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** A session living in its own worker thread; calls are queued and answered in order. */
export async function openInWorker(model: Graph | SerializedModel, opts: SessionOptions = {}): Promise<SessionHandle> {
  const m = 'bytes' in model ? model : serialize(model);
  // Run from TypeScript sources (tests, the CLI through tsx), the worker registers tsx's loader before loading itself.
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = new URL(`./session-worker${fromSource ? '.ts' : '.js'}`, import.meta.url);
  const worker = fromSource
    ? new Worker(
        `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((api) => { api.register(); return import(${JSON.stringify(entry.href)}); });`,
        { eval: true },
      )
    : new Worker(entry);
  let next = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let dead: Error | undefined;
  worker.on('message', (r: Reply) => {
    const w = waiting.get(r.id);
    if (!w) return;
    waiting.delete(r.id);
    // An idle worker must not keep the process alive; a busy one must.
    if (waiting.size === 0) worker.unref();
    if (r.ok) w.resolve(r.result);
    else w.reject(new Error(r.error));
  });
  const fail = (e: Error): void => {
    dead = e;
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`session worker exited (code ${code})`)));
  const call = (msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<unknown> => {
    if (dead) return Promise.reject(dead);
    const id = next++;
    worker.ref();
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      worker.postMessage({ ...msg, id }, transfer);
    });
  };
  const info = (await call({
    type: 'open',
    bytes: m.bytes,
    externalFolder: m.externalFolder,
    inputs: m.inputs,
    weightBytes: m.weightBytes,
    opts,
  })) as {
    device: 'cpu' | 'cuda';
    fallbackReason?: string;
    inputNames: string[];
    outputNames: string[];
  };
  return {
    ...info,
    run: async (feeds, fetches) => {
      // Checked here too, so a bad feed is named without a round trip and before any copy.
      checkFeeds({ inputNames: info.inputNames, inputs: m.inputs }, feeds);
      return (await call({ type: 'run', feeds, fetches })) as Record<string, HostTensor>;
    },
    release: async () => {
      await call({ type: 'release' }).catch(() => undefined);
      worker.removeAllListeners('exit');
      await worker.terminate();
    },
  };
}
