// The export worker: one export in its own thread, with its own connection to the workspace database (WAL lets it
// write the export's record while the service reads), so that a multi-GB merged or ONNX export never stalls the
// thread that answers the UI. Started by exportInWorker (in-worker.ts).
import { startedBy } from '../messages/ports.js';
import { serve } from '../messages/protocol.js';
import { Workspace } from '../store/workspace.js';
import type { ExportProtocol } from './in-worker.js';
import { exportPlugin } from './index.js';

const caller = serve<ExportProtocol>(startedBy(), {
  requests: {
    export: ({ workspace, request }) => {
      const ws = Workspace.open(workspace, { recover: false });
      try {
        return exportPlugin(ws, request, (fraction, message) => caller.emit('progress', { fraction, message }));
      } finally {
        ws.close();
      }
    },
  },
});
