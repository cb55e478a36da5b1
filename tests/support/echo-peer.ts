// The started side for tests/messages.test.ts, in whichever worker thread or child process started it: echoes,
// fails with an error that has a code, streams events on command, exits or never answers when asked.
import { isMainThread } from 'node:worker_threads';
import { startedBy } from '../../native/messages/ports.js';
import { serve } from '../../native/messages/protocol.js';

export type EchoProtocol = {
  requests: {
    echo: { params: { text: string }; result: { text: string; pid: number; inThread: boolean } };
    fail: { params: { limit: number }; result: never };
    exit: { params: { code: number }; result: never };
    hang: { params: void; result: never };
  };
  commands: { count: number };
  events: { counted: number };
};

class QuotaError extends Error {
  readonly code = 'over-quota';
  constructor(readonly limit: number) {
    super(`over the quota of ${limit}`);
    this.name = 'QuotaError';
  }
}

const peer = serve<EchoProtocol>(startedBy(), {
  requests: {
    echo: ({ text }) => ({ text, pid: process.pid, inThread: !isMainThread }),
    fail: ({ limit }) => {
      throw new QuotaError(limit);
    },
    exit: ({ code }) => process.exit(code),
    hang: () => new Promise<never>(() => {}),
  },
  commands: {
    count: (n) => {
      for (let i = 1; i <= n; i++) peer.emit('counted', i);
    },
  },
});
