// Result types of every contract method: plain JSON objects, so that the renderer can import them type-only
// (`import type { Result } from '…/native/api/service.js'`). Rows are the workspace's own row types.
import type { CheckReport } from '../store/check.js';
import type { MetricPoint, ModelRow, PluginVersionRow, RunRow, RunStatus } from '../store/workspace.js';
import type { ModelTree } from '../models/tree.js';
import type { DeltaReport } from '../delta/report.js';
import type { ColumnMapping, DataFormat, DatasetStats, SplitName, TaskKind } from '../data/types.js';
import type { TokenLengthStats } from '../data/tokens.js';
import type { ExportResult } from '../export/index.js';
import type { Prediction } from '../plugins/session.js';

export type {
  CheckReport,
  MetricPoint,
  ModelRow,
  PluginVersionRow,
  RunRow,
  RunStatus,
  ModelTree,
  DeltaReport,
  ExportResult,
  Prediction,
};

/** What a `job` method returns at once; its outcome comes as job.progress / job.done events with this id. */
export interface JobStarted {
  jobId: string;
}

export interface RecentWorkspace {
  path: string;
  openedAt: string;
  exists: boolean;
}

export interface AppInfo {
  version: string;
  transport: 'ipc' | 'http';
  workspace: string | null;
  recent: RecentWorkspace[];
}

export interface WorkspaceInfo {
  path: string;
  schemaVersion: number;
  /** Runs left interrupted (by a crash or a closed app): runs.resume continues them from their checkpoint. */
  interrupted: string[];
  counts: { models: number; datasets: number; runs: number; plugins: number };
}

export interface ModelTreeResult {
  /** `root` is the nested form, `modules` the same tree flat (depth first). */
  tree: ModelTree;
  task: string;
  /** With deltas: what they cost (trainable params, %, plugin bytes, memory). */
  report: DeltaReport | null;
}

export interface DatasetPreview {
  path: string;
  format: DataFormat;
  columns: string[];
  rows: Record<string, string>[];
  /** Best guess from the headers (null when nothing fits); the UI lets the user change it. */
  guess: { task: TaskKind; columns: ColumnMapping } | null;
}

/** job.done result of datasets.import. */
export interface DatasetImportResult {
  datasetId: number;
  versionId: number;
  digest: string;
  task: TaskKind;
  rows: Record<SplitName, number>;
  labels: string[] | null;
  columns: ColumnMapping;
}

export interface DatasetSummary {
  id: number;
  name: string;
  versions: {
    id: number;
    digest: string;
    dir: string;
    task: string;
    source: string;
    stats: unknown;
    created_at: string;
  }[];
}

export interface DatasetStatsResult {
  versionId: number;
  task: TaskKind;
  rows: Record<SplitName, number>;
  labels: string[] | null;
  /** Classification: rows per label per split. */
  labelCounts: Partial<Record<SplitName, Record<string, number>>> | null;
  labelRange: DatasetStats['labelRange'] | null;
  fields: DatasetStats['fields'];
  duplicates: number;
  /** With a model: token lengths under its tokenizer (histogram in powers of two). */
  tokens: TokenLengthStats | null;
}

export interface RunEstimate {
  trainableParams: number;
  trainablePercent: number;
  backboneParams: number;
  pluginBytes: number;
  memoryBytes: number;
  memory: DeltaReport['estimate'];
  byMethod: Record<string, number>;
  device: 'cpu' | 'cuda';
  steps: number;
  tokens: number;
  tokensPerSec: number;
  secondsEstimate: number;
  /** How secondsEstimate was made, in words (measured speed of an earlier run, or the default assumption). */
  basis: string;
}

export interface RunStarted {
  runId: string;
  status: RunStatus;
  /** 0 = training now; n = n runs ahead of it. */ position: number;
}

export type RunSummary = RunRow & { metrics: Record<string, number | null> };

export interface RunDetail {
  run: RunRow;
  /** The recorded training config (model folder, task, labels, deltas, hyperparameters). */
  config: Record<string, unknown>;
  metricKeys: string[];
  latest: Record<string, number | null>;
  plugin: { name: string; version: number } | null;
  /** Position in the service's queue (null when not queued). */
  queuePosition: number | null;
}

export interface RunMetrics {
  runId: string;
  series: Record<string, MetricPoint[]>;
}

export interface RunControl {
  runId: string;
  status: RunStatus;
}

export interface CompareRow {
  id: string;
  name: string | null;
  method: string;
  status: RunStatus;
  trainable_params: number | null;
  trainable_percent: number | null;
  steps: number;
  train_seconds: number | null;
  tokens_per_sec: number | null;
  /** Latest eval metrics, without the "eval/" prefix. */
  metrics: Record<string, number | null>;
}
export interface CompareResult {
  runs: CompareRow[];
  metricKeys: string[];
}

export interface SweepStarted {
  runIds: string[];
}

export interface PluginSummary {
  name: string;
  description: string;
  versions: number;
  latest: number;
  aliases: Record<string, number>;
  method: string;
  task: string;
}

export interface PluginLineage {
  version: number;
  model: { id: number; name: string; path: string } | null;
  dataset: { id: number; dataset: string; digest: string } | null;
  run: { id: string; status: RunStatus; method: string } | null;
}
export interface PluginDetail {
  name: string;
  description: string;
  aliases: Record<string, number>;
  versions: (PluginVersionRow & { tags: string[]; exports: { format: string; path: string; created_at: string }[] })[];
  lineage: PluginLineage[];
}

export type { GpuStatus } from '../runtime/cuda-install.js';
/** job.done result of system.installCuda. */
export interface CudaInstalled {
  dir: string;
  sha256: string;
}

export interface PredictRow {
  input: string;
  /** Base + the given plugins (null when no plugin is given). */
  plugins: Prediction | null;
  /** The bare base (null when not asked for, or when it cannot answer: see baseMessage). */
  base: Prediction | null;
}
export interface PredictResult {
  modelId: number;
  task: string;
  attached: { name: string; task: string; methods: string[]; baseMatches: boolean }[];
  rows: PredictRow[];
  /** Why the bare base gave no prediction (e.g. a classification base has no trained head). */
  baseMessage: string | null;
  ms: number;
}
