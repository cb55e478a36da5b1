// Where a session runs: in this thread (tests, CLI one-shots) or in a worker thread, so that onnxruntime's blocking
// run() never stalls a thread that must stay responsive. Both speak the same SessionHandle.
import type { Graph, HostTensor } from '../onnx/graph.js';
import { serialize, type SerializedModel } from '../onnx/serialize.js';
import { connect } from '../messages/protocol.js';
import { startThread, threadPort } from '../messages/ports.js';
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

export type SessionInfo = Pick<SessionHandle, 'device' | 'fallbackReason' | 'inputNames' | 'outputNames'>;

/** What a session worker answers (session-worker.ts). */
export type SessionProtocol = {
  requests: {
    open: { params: SerializedModel & { opts: SessionOptions }; result: SessionInfo };
    run: { params: { feeds: Record<string, HostTensor>; fetches?: string[] }; result: Record<string, HostTensor> };
    release: { params: void; result: void };
  };
  commands: Record<never, never>;
  events: Record<never, never>;
};

/** A session living in its own worker thread; calls wait until it is ready, then are answered by id. */
export async function openInWorker(model: Graph | SerializedModel, opts: SessionOptions = {}): Promise<SessionHandle> {
  const m = 'bytes' in model ? model : serialize(model);
  const worker = connect<SessionProtocol>(threadPort(startThread(import.meta.url, './session-worker')), {
    ended: ({ code }) => `session worker exited (code ${code})`,
  });
  const info = await worker.request('open', {
    bytes: m.bytes,
    externalFolder: m.externalFolder,
    inputs: m.inputs,
    weightBytes: m.weightBytes,
    opts,
  });
  return {
    ...info,
    run: async (feeds, fetches) => {
      // Checked here too, so a bad feed is named without a round trip and before any copy.
      checkFeeds({ inputNames: info.inputNames, inputs: m.inputs }, feeds);
      return worker.request('run', { feeds, fetches });
    },
    release: async () => {
      await worker.request('release', undefined).catch(() => undefined);
      await worker.close();
    },
  };
}
