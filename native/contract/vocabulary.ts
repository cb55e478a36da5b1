// The words the UI, the CLI and the engine share: tasks, run statuses, devices, precisions, export formats. One list
// each, here; everything else (schemas, stores, screens) refers to these.

/**
 * What a dataset trains: the user's vocabulary for tasks (a pair task is a classification with two texts; a chat is a
 * causal LM over conversations rendered with the model's chat template, learning the assistant's turns).
 */
export const TASKS = ['classification', 'pair-classification', 'regression', 'causal-lm', 'seq2seq', 'chat'] as const;
export type TaskName = (typeof TASKS)[number];

/**
 * A run's life: queued → running ⇄ paused → finished | diverged | failed, or stopped without a result — cancelled
 * (someone chose to) or interrupted (the trainer, the app or the machine went away) — both resumable from the last
 * checkpoint.
 */
export const RUN_STATUSES = [
  'queued',
  'running',
  'paused',
  'finished',
  'failed',
  'diverged',
  'interrupted',
  'cancelled',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
/** Statuses a run can be resumed from (continuing from its last checkpoint); a failed one may be retried so. */
export const RESUMABLE_STATUSES: readonly RunStatus[] = ['paused', 'interrupted', 'cancelled', 'failed'];
/** Statuses of a run that is still someone's business (queued or training). */
export const ACTIVE_STATUSES: readonly RunStatus[] = ['queued', 'running', 'paused'];

export const DEVICES = ['auto', 'cpu', 'cuda'] as const;
export type DeviceChoice = (typeof DEVICES)[number];

export const PRECISIONS = ['float32', 'float16'] as const;
export type Precision = (typeof PRECISIONS)[number];

export const SCHEDULES = ['linear', 'cosine', 'constant'] as const;
export type Schedule = (typeof SCHEDULES)[number];

export const EXPORT_FORMATS = ['peft', 'merged', 'onnx', 'bundle'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const SPLITS = ['train', 'validation', 'test'] as const;
export type SplitName = (typeof SPLITS)[number];

/**
 * The columns a task reads from a data file, by the role they play. A chat reads a list of messages (`messages`), or
 * alpaca's instruction, optional input and output (and an optional system prompt).
 */
export const COLUMN_ROLES = [
  'text',
  'text_pair',
  'label',
  'prompt',
  'completion',
  'source',
  'target',
  'messages',
  'instruction',
  'input',
  'output',
  'system',
] as const;
export type ColumnRole = (typeof COLUMN_ROLES)[number];
export type ColumnMapping = Partial<Record<ColumnRole, string>>;

/**
 * A model's name on the Hugging Face Hub, as the Hub allows it: "name" or "org/name", letters, digits, "_", "-" and
 * "." (a letter, digit or "_" at each end, no "--" or "..", not ending in ".git"; 96 characters a part at most).
 */
export const HUB_REPO_ID = /^(?!.*(?:--|\.\.))(?!.*\.git$)(?:\w(?:[\w.-]{0,94}\w)?\/)?\w(?:[\w.-]{0,94}\w)?$/;
/** A revision of a Hub repository: a branch, a tag, a commit or a pull request's ref ("refs/pr/3"). */
export const HUB_REVISION = /^(?![./-])(?!.*(?:\.\.|\/\/|\/$|\.lock$|\.$))[\w./-]{1,200}$/;

/** Who speaks in a conversation. */
export const CHAT_ROLES = ['system', 'user', 'assistant'] as const;
export type ChatRole = (typeof CHAT_ROLES)[number];

/** Chat templates built in, for models that ship none (`--chat-template chatml`). */
export const NAMED_CHAT_TEMPLATES = ['chatml'] as const;
