// The export worker: one export in its own thread, with its own connection to the workspace database (WAL lets it
// write the export's record while the service reads), so that a multi-GB merged or ONNX export never stalls the
// thread that answers the UI. Started by exportInWorker (in-worker.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { Workspace } from '../store/workspace.js';
import { toContractError } from '../app/errors.js';
import { exportPlugin, type ExportRequest } from './index.js';

const { workspace, request } = workerData as { workspace: string; request: ExportRequest };
let ws: Workspace | undefined;
try {
  ws = Workspace.open(workspace, { recover: false });
  const result = exportPlugin(ws, request, (fraction, message) =>
    parentPort!.postMessage({ type: 'progress', fraction, message }),
  );
  parentPort!.postMessage({ type: 'done', result });
} catch (e) {
  parentPort!.postMessage({ type: 'error', error: toContractError(e).error });
} finally {
  ws?.close();
}
