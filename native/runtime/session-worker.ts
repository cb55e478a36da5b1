// Worker-thread side of openInWorker: owns one onnxruntime session and answers open/run/release messages.
import { parentPort } from 'node:worker_threads';
import type { HostTensor, Value } from '../onnx/graph.js';
import { openSession, runSession, type OpenedSession } from './session.js';

let session: OpenedSession | undefined;

parentPort!.on('message', async (msg: { id: number; type: string; [k: string]: unknown }) => {
  try {
    if (msg.type === 'open') {
      session = await openSession(
        {
          bytes: msg.bytes as Uint8Array,
          externalFolder: msg.externalFolder as string | undefined,
          inputs: msg.inputs as Value[],
          weightBytes: msg.weightBytes as number,
        },
        msg.opts as object,
      );
      parentPort!.postMessage({
        id: msg.id,
        ok: true,
        result: {
          device: session.device,
          fallbackReason: session.fallbackReason,
          inputNames: session.inputNames,
          outputNames: session.outputNames,
        },
      });
    } else if (msg.type === 'run') {
      if (!session) throw new Error('no session is open in this worker');
      const out = await runSession(
        session,
        msg.feeds as Record<string, HostTensor>,
        msg.fetches as string[] | undefined,
      );
      const transfer = Object.values(out).map((t) => t.data.buffer as ArrayBuffer);
      parentPort!.postMessage({ id: msg.id, ok: true, result: out }, [...new Set(transfer)]);
    } else if (msg.type === 'release') {
      await session?.session.release();
      session = undefined;
      parentPort!.postMessage({ id: msg.id, ok: true, result: null });
    }
  } catch (e) {
    parentPort!.postMessage({ id: msg.id, ok: false, error: (e as Error).message });
  }
});
