// Runs exportPlugin in a worker thread (see worker.ts) and relays its progress. Its errors come back as the classes
// thrown there (WorkspaceError, PathEscapeError, …), so the service gives them the same contract codes and messages
// as an export in this thread.
import { PathEscapeError } from '../files/paths.js';
import { startThread, threadPort } from '../messages/ports.js';
import { connect } from '../messages/protocol.js';
import { WorkspaceError } from '../store/workspace.js';
import type { ExportRequest, ExportResult } from './index.js';

/** What the export worker answers (worker.ts). */
export type ExportProtocol = {
  requests: { export: { params: { workspace: string; request: ExportRequest }; result: ExportResult } };
  commands: Record<never, never>;
  events: { progress: { fraction: number; message: string } };
};

export async function exportInWorker(
  workspace: string,
  request: ExportRequest,
  progress: (fraction: number, message: string) => void = () => {},
): Promise<ExportResult> {
  const worker = connect<ExportProtocol>(threadPort(startThread(import.meta.url, './worker')), {
    errors: { WorkspaceError, PathEscapeError },
    ended: ({ code }) => `the export worker stopped without a result (exit code ${code})`,
  });
  worker.on('progress', ({ fraction, message }) => progress(fraction, message));
  try {
    return await worker.request('export', { workspace, request });
  } finally {
    await worker.close();
  }
}
