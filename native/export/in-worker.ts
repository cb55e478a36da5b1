// Runs exportPlugin in a worker thread (see worker.ts) and relays its progress; errors come back as the contract's
// ApiError, so the UI sees the same codes and messages as from an export in this thread.
import { Worker } from 'node:worker_threads';
import { ContractError, type ApiError } from '../contract/errors.js';
import type { ExportRequest, ExportResult } from './index.js';

export function exportInWorker(
  workspace: string,
  request: ExportRequest,
  progress: (fraction: number, message: string) => void = () => {},
): Promise<ExportResult> {
  // Run from TypeScript sources (tests, the CLI through tsx), the worker registers tsx's loader before loading itself.
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = new URL(`./worker${fromSource ? '.ts' : '.js'}`, import.meta.url);
  const workerData = { workspace, request };
  const worker = fromSource
    ? new Worker(
        `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((api) => { api.register(); return import(${JSON.stringify(entry.href)}); });`,
        { eval: true, workerData },
      )
    : new Worker(entry, { workerData });
  return new Promise((resolve, reject) => {
    let settled = false;
    worker.on(
      'message',
      (
        m:
          | { type: 'progress'; fraction: number; message: string }
          | { type: 'done'; result: ExportResult }
          | { type: 'error'; error: ApiError },
      ) => {
        if (m.type === 'progress') progress(m.fraction, m.message);
        else if (m.type === 'done') {
          settled = true;
          resolve(m.result);
        } else {
          settled = true;
          reject(new ContractError(m.error));
        }
      },
    );
    worker.on('error', (e) => {
      if (!settled) {
        settled = true;
        reject(e);
      }
    });
    worker.on('exit', (code) => {
      if (!settled) reject(new Error(`the export worker stopped without a result (exit code ${code})`));
    });
  });
}
