// Models: recording a Hugging Face folder (referenced in place, or copied into the workspace), listing them, and the
// module tree with what a delta config would modify and cost.
import { resolve } from 'node:path';
import type { DeltaConfigInput, Model, ModelTreeResult, TaskName } from '../contract/index.js';
import { loadWithDeltas } from '../delta/index.js';
import { deltaReport } from '../delta/report.js';
import { loadModel } from '../models/index.js';
import { moduleTree } from '../models/tree.js';
import type { Workspace } from '../store/workspace.js';
import { toDeltaReport, toModel, toModelTree } from './dto.js';
import { runDeltas } from './runs.js';
import { headTask, taskName } from './tasks.js';

export class Models {
  constructor(private readonly need: () => Workspace) {}

  import(p: { path: string; copy?: boolean; name?: string }): Model {
    const ws = this.need();
    const row = ws.addModel(resolve(p.path), { copy: p.copy, name: p.name });
    return toModel(row, ws.modelPath(row));
  }

  list(): Model[] {
    const ws = this.need();
    return ws.listModels().map((m) => toModel(m, ws.modelPath(m)));
  }

  /** The folder a recorded model is read from. */
  folder(modelId: number): string {
    const ws = this.need();
    return ws.modelPath(ws.getModel(modelId));
  }

  tree(p: {
    modelId: number;
    task?: TaskName;
    numLabels?: number;
    deltas?: DeltaConfigInput[];
    batch?: number;
    seq?: number;
  }): ModelTreeResult {
    const dir = this.folder(p.modelId);
    const opts = { task: p.task && headTask(p.task), numLabels: p.numLabels };
    if (p.deltas?.length) {
      const { model, applied } = loadWithDeltas(dir, opts, runDeltas(p.deltas));
      const report = deltaReport(model, applied, { batch: p.batch ?? 8, seq: p.seq ?? 128 });
      return {
        tree: toModelTree(moduleTree(model, applied.marked)),
        task: taskName(model.task),
        report: toDeltaReport(report),
      };
    }
    const model = loadModel(dir, opts);
    return { tree: toModelTree(moduleTree(model)), task: taskName(model.task), report: null };
  }
}
