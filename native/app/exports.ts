// Exporting a plugin version (PEFT adapter, merged model, ONNX, bundle), in a worker thread: a multi-GB export must
// not stall the thread that answers the UI or prints progress.
import { resolve } from 'node:path';
import type { ExportFormat, ExportResult } from '../contract/index.js';
import { exportInWorker } from '../export/in-worker.js';
import type { Workspace } from '../store/workspace.js';
import type { Progress } from './jobs.js';

export interface ExportChoice {
  ref: string;
  format: ExportFormat;
  folder?: string;
  name?: string;
  onnxMode?: 'baked' | 'inputs';
  dtype?: 'float32' | 'source';
  overwrite?: boolean;
  model?: string;
  force?: boolean;
}

export class Exports {
  constructor(private readonly need: () => Workspace) {}

  /** Checks what can be checked at once (an unknown plugin is an answer, not a failed job). */
  check(c: ExportChoice): void {
    this.need().resolvePlugin(c.ref);
  }

  run(c: ExportChoice, progress: Progress = () => {}): Promise<ExportResult> {
    const ws = this.need();
    return exportInWorker(
      ws.dir,
      {
        plugin: c.ref,
        format: c.format,
        folder: c.folder ? resolve(c.folder) : undefined,
        name: c.name,
        model: c.model ? resolve(c.model) : undefined,
        onnxMode: c.onnxMode,
        dtype: c.dtype,
        overwrite: c.overwrite,
        force: c.force,
      },
      progress,
    );
  }
}
