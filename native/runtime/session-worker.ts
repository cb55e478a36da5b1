// Worker-thread side of openInWorker: owns one onnxruntime session and answers open/run/release requests.
import { serve, transferring } from '../messages/protocol.js';
import { startedBy } from '../messages/ports.js';
import type { SessionProtocol } from './host.js';
import { openSession, runSession, type OpenedSession } from './session.js';

let session: OpenedSession | undefined;

serve<SessionProtocol>(startedBy(), {
  requests: {
    open: async ({ opts, ...model }) => {
      session = await openSession(model, opts);
      const { device, fallbackReason, inputNames, outputNames } = session;
      return { device, fallbackReason, inputNames, outputNames };
    },
    run: async ({ feeds, fetches }) => {
      if (!session) throw new Error('no session is open in this worker');
      const out = await runSession(session, feeds, fetches);
      // The outputs move to the caller's thread instead of being copied.
      return transferring(
        out,
        Object.values(out).map((t) => t.data.buffer as ArrayBuffer),
      );
    },
    release: async () => {
      await session?.session.release();
      session = undefined;
    },
  },
});
