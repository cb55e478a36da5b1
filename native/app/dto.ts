// The store's rows and the engine's objects as the contract's camelCase data. Each mapper is typed on both sides,
// so a field added to one and not the other is a compile error here, not a surprise in the UI.
import type * as C from '../contract/index.js';
import type { ModelRow, PluginVersionRow, RunRow } from '../store/workspace.js';
import type { ModelTree } from '../models/tree.js';
import type { DeltaReport } from '../delta/report.js';
import { taskName } from './tasks.js';

export function toModel(m: ModelRow, path: string): C.Model {
  return {
    id: m.id,
    name: m.name,
    path,
    copied: m.copied === 1,
    modelType: m.model_type,
    architecture: m.architecture,
    fingerprint: m.fingerprint,
    params: m.params,
    addedAt: m.added_at,
  };
}

export function toRun(r: RunRow): C.Run {
  return {
    id: r.id,
    name: r.name,
    status: r.status,
    method: r.method,
    trainableParams: r.trainable_params,
    totalParams: r.total_params,
    device: r.device,
    modelId: r.model_id,
    datasetVersionId: r.dataset_version_id,
    dir: r.dir,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    steps: r.steps,
    totalSteps: r.total_steps,
    trainSeconds: r.train_seconds,
    tokensPerSec: r.tokens_per_sec,
    reason: r.reason,
  };
}

/** A JSON column read back; a damaged value reads as `fallback` rather than failing a whole listing. */
function parsed<T>(text: string | null, fallback: T): T {
  if (text === null) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/** Only finite numbers: a plugin's metadata is the user's file and may hold anything. */
function numbers(x: unknown): Record<string, number> {
  if (!x || typeof x !== 'object') return {};
  return Object.fromEntries(
    Object.entries(x as Record<string, unknown>).filter(
      (e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1]),
    ),
  );
}

export function toPluginVersion(v: PluginVersionRow, file: string): C.PluginVersion {
  return {
    id: v.id,
    plugin: v.plugin,
    version: v.version,
    file,
    sha256: v.sha256,
    size: v.size,
    method: v.method,
    methods: parsed<C.DeltaConfigInput[]>(v.methods, []),
    task: taskName(v.task),
    labels: parsed<string[] | null>(v.labels, null),
    baseFingerprint: v.base_fingerprint,
    modelId: v.model_id,
    runId: v.run_id,
    source: v.source,
    metrics: numbers(parsed<unknown>(v.metrics, {})),
    trainableParams: v.trainable_params,
    notes: v.notes,
    createdAt: v.created_at,
  };
}

export function toTreeNode(n: ModelTree['root']): C.TreeNode {
  return {
    name: n.name,
    key: n.key,
    type: n.type,
    params: n.params,
    count: n.count,
    repeat: n.repeat,
    children: n.children.map(toTreeNode),
    ...(n.delta ? { delta: n.delta } : {}),
  };
}

export function toModelTree(t: ModelTree): C.ModelTree {
  return {
    architecture: t.architecture,
    modelType: t.model_type,
    paramsTotal: t.params_total,
    paramsNew: t.params_new,
    root: toTreeNode(t.root),
  };
}

export function toDeltaReport(r: DeltaReport): C.DeltaReport {
  return {
    matchedModules: r.matched_modules,
    trainableParams: r.trainable_params,
    trainablePercent: r.trainable_percent,
    backboneParams: r.backbone_params,
    pluginBytes: r.plugin_bytes,
    estimatedTrainMemoryBytes: r.estimated_train_memory_bytes,
    estimate: {
      batch: r.estimate.batch,
      seq: r.estimate.seq,
      weightsBytes: r.estimate.weights_bytes,
      optimizerBytes: r.estimate.optimizer_bytes,
      activationBytes: r.estimate.activation_bytes,
    },
    byMethod: r.by_method,
  };
}
