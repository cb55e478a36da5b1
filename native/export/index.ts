// One call for the one-click export: a plugin version of a workspace, a format, and the folder chosen for it. The
// export is written inside that folder (default: the workspace's exports/) under a name of its own (default:
// <plugin>-v<version>-<format>); a name that would leave the folder is refused. Each export is recorded, so the
// plugin's lineage shows it.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { insideJoin, safeName } from '../files/paths.js';
import type { Workspace } from '../store/workspace.js';
import { exportBundle } from './bundle.js';
import { exportMerged } from './merged.js';
import { exportOnnx } from './onnx.js';
import { exportPeft } from './peft.js';

import { EXPORT_FORMATS, type ExportFormat } from '../contract/vocabulary.js';
import type { ExportResult } from '../contract/types.js';

export type { ExportResult } from '../contract/types.js';

export { EXPORT_FORMATS, type ExportFormat };

export interface ExportRequest {
  /** Plugin reference: "name", "name@3", "name@best". */
  plugin: string;
  format: ExportFormat;
  /** The folder to export into (default: the workspace's exports/). */
  folder?: string;
  /** Name of the export inside the folder (default: <plugin>-v<version>-<format>). */
  name?: string;
  /** The base model folder (default: the model the plugin's run used, as recorded). */
  model?: string;
  /** onnx: delta baked in, or its parameters as inputs (hot-swap). */
  onnxMode?: 'baked' | 'inputs';
  /** merged: keep each weight's dtype ('source') or write float32. */
  dtype?: 'float32' | 'source';
  overwrite?: boolean;
  /** Export onto a base model other than the one the plugin was trained on. */
  force?: boolean;
}

function sizeOf(paths: string[]): number {
  return paths.reduce((a, p) => a + (existsSync(p) ? statSync(p).size : 0), 0);
}

export function exportPlugin(
  ws: Workspace,
  req: ExportRequest,
  progress: (fraction: number, what: string) => void = () => {},
): ExportResult {
  if (!EXPORT_FORMATS.includes(req.format))
    throw new Error(`unknown export format "${req.format}" (formats: ${EXPORT_FORMATS.join(', ')})`);
  const plugin = ws.loadPlugin(req.plugin);
  const row = plugin.row;
  const folder = resolve(req.folder ?? join(ws.dir, 'exports'));
  const ext = req.format === 'onnx' ? '.onnx' : req.format === 'bundle' ? '.zip' : '';
  const name = req.name ?? `${safeName(row.plugin)}-v${row.version}-${req.format}${ext}`;
  const out = insideJoin(folder, name, 'export name');
  const needsModel = req.format !== 'bundle';
  let model = req.model;
  if (!model && needsModel) {
    const m = row.model_id !== null ? ws.getModel(row.model_id) : undefined;
    if (!m)
      throw new Error(
        `plugin ${row.plugin} v${row.version} does not record its base model; give the model folder (--model)`,
      );
    model = ws.modelPath(m);
  }
  progress(0, `exporting ${row.plugin} v${row.version} as ${req.format}`);
  let files: string[];
  let options: Record<string, unknown> = {};
  switch (req.format) {
    case 'peft':
      files = exportPeft(plugin, model!, out, { overwrite: req.overwrite, force: req.force }).files;
      break;
    case 'merged': {
      const r = exportMerged(plugin, model!, out, {
        overwrite: req.overwrite,
        force: req.force,
        dtype: req.dtype,
        onProgress: (f, m) => progress(0.98 * f, m),
      });
      files = r.files;
      options = { dtype: r.dtype };
      break;
    }
    case 'onnx': {
      const r = exportOnnx(plugin, model!, out, {
        mode: req.onnxMode ?? 'baked',
        overwrite: req.overwrite,
        force: req.force,
      });
      files = [r.file, ...(r.dataFile ? [r.dataFile] : []), r.sidecar];
      options = { mode: r.mode };
      break;
    }
    case 'bundle': {
      const run = row.run_id ? ws.getRun(row.run_id) : undefined;
      const ds = run?.dataset_version_id != null ? ws.datasetVersion(run.dataset_version_id) : undefined;
      const m = row.model_id !== null ? ws.getModel(row.model_id) : undefined;
      const r = exportBundle(plugin.file, out, {
        overwrite: req.overwrite,
        run: run
          ? {
              id: run.id,
              config: JSON.parse(run.config) as unknown,
              metrics: JSON.parse(row.metrics) as Record<string, number>,
              dataset: ds ? { name: ds.dataset, digest: ds.digest } : undefined,
            }
          : undefined,
        baseModel: m ? { name: m.name, path: ws.modelPath(m) } : undefined,
      });
      files = [r.file];
      break;
    }
  }
  const bytes = sizeOf(files);
  const id = ws.recordExport(row.id, req.format, out, options, bytes);
  progress(1, `exported to ${out}`);
  return { id, format: req.format, path: out, files, bytes };
}
