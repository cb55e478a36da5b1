// What crosses the contract: plain JSON objects in camelCase, declared here and nowhere else, so the UI imports its
// types from the contract alone. The application layer (native/app) maps the store's rows and the engine's objects
// onto these; TypeScript checks each mapping.
import type { ChatRole, ColumnMapping, ExportFormat, RunStatus, SplitName, TaskName } from './vocabulary.js';
import type { DeltaConfigInput } from './run-config.js';

/** What a `job` method returns at once; its outcome comes as job.progress / job.done events with this id. */
export interface JobStarted {
  jobId: string;
}

// ——— app and workspaces ———

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

export interface CheckProblem {
  severity: 'error' | 'warning';
  kind: 'database' | 'missing' | 'corrupt' | 'orphan' | 'temp' | 'interrupted';
  path?: string;
  message: string;
  /** What --repair did about it. */
  repaired?: string;
}

export interface CheckReport {
  workspace: string;
  ok: boolean;
  schemaVersion: number;
  checked: { plugins: number; datasets: number; runs: number; models: number; bytesHashed: number };
  problems: CheckProblem[];
}

// ——— models ———

export interface Model {
  id: number;
  name: string;
  /** The folder it is read from (the workspace's copy when copied in). */
  path: string;
  copied: boolean;
  modelType: string;
  architecture: string | null;
  fingerprint: string;
  params: number | null;
  addedAt: string;
}

export interface TreeNode {
  /** Full Hugging Face name; folded repeats read e.g. "bert.encoder.layer.0-11". */
  name: string;
  key: string;
  type: string;
  /** Parameters owned directly: name relative to the module → shape. */
  params: Record<string, number[]>;
  /** Parameters in the whole subtree, repeats included. */
  count: number;
  /** How many identical blocks this node stands for (1 unless folded). */
  repeat: number;
  children: TreeNode[];
  /** Delta methods that modify this module. */
  delta?: string[];
}

export interface ModelTree {
  architecture: string;
  modelType: string;
  paramsTotal: number;
  /** Of which weights that the folder lacked and the task head created. */
  paramsNew: number;
  root: TreeNode;
}

/** What a delta config costs on a model. */
export interface DeltaReport {
  matchedModules: { name: string; methods: string[] }[];
  trainableParams: number;
  /** Of the backbone's parameters. */
  trainablePercent: number;
  backboneParams: number;
  /** Bytes of the plugin file. */
  pluginBytes: number;
  estimatedTrainMemoryBytes: number;
  /** What the memory estimate assumed. */
  estimate: { batch: number; seq: number; weightsBytes: number; optimizerBytes: number; activationBytes: number };
  /** Trainable parameters per method. */
  byMethod: Record<string, number>;
}

export interface ModelTreeResult {
  tree: ModelTree;
  task: TaskName;
  /** With deltas: what they cost (trainable params, %, plugin bytes, memory). */
  report: DeltaReport | null;
}

// ——— models from the Hugging Face Hub ———

/** Where one file of a pull stands. */
export interface HubFileProgress {
  /** Its path in the repository ("config.json", "model-00001-of-00002.safetensors"). */
  path: string;
  size: number;
  /** Bytes on disk so far, those kept from an interrupted download included. */
  bytes: number;
  /** waiting → downloading → checking (sha256) → done; cached: the cache had it already. */
  state: 'waiting' | 'downloading' | 'checking' | 'done' | 'cached';
}

/** A pull's progress: every file the engine reads, and the total. */
export interface HubPullProgress {
  repo: string;
  revision: string;
  /** The commit the revision points at (null until the Hub has said). */
  commit: string | null;
  files: HubFileProgress[];
  /** Bytes on disk of all files, and what they add up to. */
  bytes: number;
  total: number;
  /** Bytes fetched over the network by this pull. */
  fetched: number;
}

/** A repository's files, downloaded (or found) in the Hugging Face cache. */
export interface HubPullResult {
  repo: string;
  revision: string;
  commit: string;
  /** snapshots/<commit> in the cache: the model folder, its files links to blobs/. */
  snapshot: string;
  /** The Hugging Face cache it lies in. */
  cacheDir: string;
  /** network: fetched whole; resumed: the rest of an interrupted download; cache: already there. */
  files: { path: string; size: number; blob: string; from: 'network' | 'resumed' | 'cache' }[];
  totalBytes: number;
  /** Bytes fetched over the network by this pull. */
  fetchedBytes: number;
  /** The Hub was not asked (HF_HUB_OFFLINE, a commit already complete, or no network): the cache answered. */
  offline: boolean;
  /** Where the token came from ("given", "HF_TOKEN", a token file's path), never the token; null: none. */
  tokenFrom: string | null;
  /** What the user may want to know (no tokenizer.json, the cached snapshot used while offline, …). */
  notes: string[];
}

/** job.done result of models.pull: the download, and the model it was recorded as. */
export interface ModelPulled extends HubPullResult {
  model: Model;
}

// ——— datasets ———

/** One turn of a conversation (a chat dataset's rows, the playground's chat). */
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export type DataFormat = 'csv' | 'tsv' | 'jsonl' | 'json';

export interface DatasetPreview {
  path: string;
  format: DataFormat;
  columns: string[];
  rows: Record<string, string>[];
  /** Best guess from the headers (null when nothing fits); the UI lets the user change it. */
  guess: { task: TaskName; columns: ColumnMapping } | null;
  /** A chat (guessed or asked for): the first row as the conversation it becomes, rendered for the model given. */
  example?: ChatExample | null;
}

/** A conversation as training reads it. */
export interface ChatExample {
  /** The first row's conversation, normalised (OpenAI, ShareGPT and alpaca rows all become these). */
  messages: ChatMessage[];
  /** With a model: its chat template's text of the conversation and the assistant's parts in it (what is learnt). */
  rendered: { text: string; assistant: [number, number][]; template: string; source: string } | null;
  /** Why there is no conversation or no rendering (a row that is not a conversation, a model without a template). */
  problem: string | null;
}

/** job.done result of datasets.import. */
export interface DatasetImportResult {
  datasetId: number;
  versionId: number;
  digest: string;
  task: TaskName;
  rows: Record<SplitName, number>;
  labels: string[] | null;
  columns: ColumnMapping;
}

export interface DatasetVersionSummary {
  id: number;
  digest: string;
  task: TaskName;
  /** The file(s) it was imported from. */
  source: string;
  rows: Record<SplitName, number> | null;
  createdAt: string;
}

export interface DatasetSummary {
  id: number;
  name: string;
  versions: DatasetVersionSummary[];
}

export interface LengthStats {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  max: number;
  /** Powers of two from 8 up: `count` rows have a length in (previous bucketUpper, bucketUpper]. */
  histogram: { bucketUpper: number; count: number }[];
}

export interface DatasetStatsResult {
  versionId: number;
  task: TaskName;
  rows: Record<SplitName, number>;
  labels: string[] | null;
  /** Classification: rows per label per split. */
  labelCounts: Partial<Record<SplitName, Record<string, number>>> | null;
  labelRange: { min: number; max: number; mean: number; std: number } | null;
  fields: Partial<Record<string, { minChars: number; maxChars: number; meanChars: number }>>;
  duplicates: number;
  /** With a model: token lengths under its tokenizer (seq2seq: `target` for the targets; a chat under its template). */
  tokens: (LengthStats & { target?: LengthStats }) | null;
  /** chat: assistant turns per conversation, conversations with a system message. */
  turns?: { min: number; max: number; mean: number; withSystem: number } | null;
  /** Why there are no token lengths although a model was given (a chat, and a model without a chat template). */
  tokensProblem?: string | null;
}

// ——— runs ———

export interface Run {
  id: string;
  name: string | null;
  status: RunStatus;
  /** The methods, joined by "+". */
  method: string;
  trainableParams: number | null;
  totalParams: number | null;
  device: string | null;
  modelId: number | null;
  datasetVersionId: number | null;
  /** Its folder (checkpoints, run.json, train.log). */
  dir: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  steps: number;
  totalSteps: number | null;
  trainSeconds: number | null;
  tokensPerSec: number | null;
  /** Why it ended as it did (failed, diverged, stopped early, interrupted). */
  reason: string | null;
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
  /** 0 = training now; n = n runs ahead of it. */
  position: number;
}

export type RunSummary = Run & { metrics: Record<string, number | null> };

export interface PluginRef {
  name: string;
  version: number;
}

export interface RunDetail {
  run: Run;
  /** The recorded training config (model folder, task, labels, deltas, hyperparameters). */
  config: Record<string, unknown>;
  metricKeys: string[];
  latest: Record<string, number | null>;
  plugin: PluginRef | null;
  /** Position in the queue (null when not queued). */
  queuePosition: number | null;
}

export interface MetricPoint {
  step: number;
  value: number | null;
  /** The value was NaN or infinite (kept as a flag; value is null). */
  nan: boolean;
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
  trainableParams: number | null;
  trainablePercent: number | null;
  steps: number;
  trainSeconds: number | null;
  tokensPerSec: number | null;
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

// ——— plugins ———

export interface PluginSummary {
  name: string;
  description: string;
  versions: number;
  latest: number;
  aliases: Record<string, number>;
  method: string;
  task: TaskName;
}

export interface PluginVersion {
  id: number;
  plugin: string;
  version: number;
  /** The .delta file. */
  file: string;
  sha256: string;
  size: number;
  method: string;
  methods: DeltaConfigInput[];
  task: TaskName;
  labels: string[] | null;
  baseFingerprint: string;
  modelId: number | null;
  runId: string | null;
  /** 'run', 'import' or where it was imported from ('peft:<dir>'). */
  source: string;
  metrics: Record<string, number>;
  trainableParams: number;
  notes: string;
  createdAt: string;
}

export interface PluginExportRecord {
  format: ExportFormat;
  path: string;
  createdAt: string;
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
  versions: (PluginVersion & { tags: string[]; exports: PluginExportRecord[] })[];
  lineage: PluginLineage[];
}

/** job.done result of plugins.export. */
export interface ExportResult {
  id: number;
  format: ExportFormat;
  /** The folder or file made. */
  path: string;
  files: string[];
  bytes: number;
}

// ——— playground ———

export type Prediction =
  { label: string; probabilities: Record<string, number> } | { value: number } | { generated: string };

export interface PredictRow {
  input: string;
  /** Base + the given plugins (null when no plugin is given). */
  plugins: Prediction | null;
  /** The bare base (null when not asked for, or when it cannot answer: see baseMessage). */
  base: Prediction | null;
}

export interface PredictResult {
  modelId: number;
  task: TaskName;
  attached: { name: string; task: TaskName; methods: string[]; baseMatches: boolean }[];
  rows: PredictRow[];
  /** Why the bare base gave no prediction (e.g. a classification base has no trained head). */
  baseMessage: string | null;
  ms: number;
}

/** One side's reply in the chat playground. */
export interface ChatReply {
  text: string;
  tokens: number;
  /** 'stop': the template's end-of-turn marker or eos; 'length': maxNewTokens was reached. */
  stopped: 'stop' | 'length';
}

export interface ChatResult {
  modelId: number;
  streamId: string;
  attached: { name: string; task: TaskName; methods: string[]; baseMatches: boolean }[];
  /** The chat template the conversation was written with: its name and where it came from. */
  template: { name: string; source: string };
  /** Base + the given plugins (null when no plugin is given). */
  plugins: ChatReply | null;
  /** The bare base (null when not asked for). */
  base: ChatReply | null;
  ms: number;
}

// ——— system ———

export type CudaLibraryName = 'cudart' | 'cublasLt' | 'cublas' | 'curand' | 'cudnn';

export interface FoundLibrary {
  path: string;
  folder: string;
  /** From the file name behind the soname (libcudart.so.13.0.96 → 13.0.96), else the soname's major version. */
  version: string;
  via: 'LD_LIBRARY_PATH' | 'system' | 'conda' | 'python' | 'toolkit';
  /** In words, for people: "pip wheel in /opt/torch/.venv", "CUDA toolkit /usr/local/cuda-13.0". */
  where: string;
}

/** One of the CUDA libraries onnxruntime's CUDA provider needs: where it was found, or what installs it. */
export interface CudaLibraryStatus {
  name: CudaLibraryName;
  label: string;
  soname: string;
  found?: FoundLibrary;
  /** What installs it, when it is missing: in words, and the pip requirement. */
  install?: string;
  pip?: string;
}

export interface CudaLibraries {
  /** Searching is for Linux; elsewhere the list is empty and `supported` says why. */
  supported: boolean;
  reason?: string;
  libraries: CudaLibraryStatus[];
  /** Sonames not found. */
  missing: string[];
  /** Folders to prepend to LD_LIBRARY_PATH, in order: those of found libraries the loader would not find itself. */
  loaderPath: string[];
  /** How many folders were looked in. */
  searched: number;
}

export interface GpuStatus {
  nvidia: { present: boolean; name?: string; driver?: string; reason?: string };
  provider: { installed: boolean; binFolder: string; dataFolder?: string; inBinFolder: boolean; inDataFolder: boolean };
  loadable: boolean;
  reason?: string;
  advice: string;
  /** The CUDA libraries the provider needs: where each was found (path, version, how), or missing. */
  libraries: CudaLibraries;
  install: { supported: boolean; url: string; pinned: boolean; cuda: string; ortVersion: string; reason?: string };
  /**
   * Whether training keeps parameters and optimizer state on the GPU between steps (the resident-state addon, built
   * by npm install with a C++ compiler), and if not, why: then they cross to the host and back every step.
   */
  deviceState: { available: boolean; reason?: string };
}

/** job.done result of system.installCuda. */
export interface CudaInstalled {
  /** Where the provider was unpacked (the app's data folder). */
  dir: string;
  files: string[];
  sha256: string;
  /** Whether it was copied next to onnxruntime's core library (where onnxruntime loads it from), or why not. */
  activation: { activated: boolean; reason?: string };
}
