// Types of the dataset importer, and the one error class every bad input becomes.
import type { ChatMessage } from '../contract/types.js';
import { COLUMN_ROLES } from '../contract/vocabulary.js';

export type { ChatMessage } from '../contract/types.js';

export type TaskKind = 'classification' | 'pair-classification' | 'regression' | 'causal-lm' | 'seq2seq' | 'chat';
export type DataFormat = 'csv' | 'tsv' | 'jsonl' | 'json';
export type TextEncoding = 'utf-8' | 'utf-16le' | 'latin1';
export type SplitName = 'train' | 'validation' | 'test';
export const SPLITS: readonly SplitName[] = ['train', 'validation', 'test'];

/**
 * The columns a task maps (the contract's column roles), and the fields of a normalised row in the order they are
 * serialised (this order is part of the digest). A chat row is `{messages}` whatever it was read from: alpaca's
 * instruction, input, output and a system column become messages.
 */
export const ROLES = COLUMN_ROLES;
export type Role = (typeof ROLES)[number];

/** Which input column feeds which field of the normalised rows. */
export type ColumnMapping = Partial<Record<Role, string>>;

export interface ImportOptions {
  task: TaskKind;
  /** Input column per field; unmapped fields take the task's defaults (see `DEFAULT_COLUMNS`). */
  columns?: ColumnMapping;
  /** Default: from the extension (.csv, .tsv/.tab, .jsonl/.ndjson, .json). */
  format?: DataFormat;
  /**
   * Default 'utf-8' (a BOM is skipped; a file that starts with the UTF-16 LE BOM is read as 'utf-16le').
   * 'latin1' is ISO-8859-1: every byte is one character, so it never fails.
   */
  encoding?: TextEncoding;
  /** Fractions of the rows that go to validation and test, by a hash of (seed, row). Default 0.1, 0, seed 0. */
  split?: { validation?: number; test?: number; seed?: number };
  /** Split files given by the user; a split given as a file is not carved out of the input file. */
  files?: { validation?: string; test?: string };
  /** Refuse any input file larger than this; default 1 GiB. */
  maxBytes?: number;
  /**
   * CSV/TSV files without a header line: their column names, in order (every line is then a row). JSON and JSONL
   * name their fields themselves.
   */
  headerless?: string[];
}

/** One normalised row. Which fields are set depends on the task (see `TASK_FIELDS`). */
export interface Example {
  text?: string;
  text_pair?: string;
  /** Classification: the label's text; regression: a finite number. */
  label?: string | number;
  prompt?: string;
  completion?: string;
  source?: string;
  target?: string;
  /** chat: the conversation, ending with an assistant turn. */
  messages?: ChatMessage[];
}

export interface FieldStats {
  /** Characters (UTF-16 code units), over all splits. */
  minChars: number;
  maxChars: number;
  meanChars: number;
}

export interface DatasetStats {
  /** Per normalised text field (text, text_pair, prompt, …; not label). */
  fields: Partial<Record<Role, FieldStats>>;
  /** Classification: rows per label per split. */
  labelCounts?: Record<SplitName, Record<string, number>>;
  /** Regression: the labels over all splits. */
  labelRange?: { min: number; max: number; mean: number; std: number };
  /** Rows equal (all normalised fields) to an earlier row (by a 53-bit hash). Equal rows always land in the same split. */
  duplicates: number;
  /** Blank rows that were skipped (empty lines, CSV rows of empty fields). */
  skippedBlank: number;
  /** chat: assistant turns per conversation, and how many conversations have a system message. */
  turns?: { min: number; max: number; mean: number; withSystem: number };
}

export interface DatasetVersion {
  /** Format version of this file. */
  version: 1;
  /** sha256 (hex) of the normalised rows in input order, each tagged with its split: the dataset's version. */
  digest: string;
  task: TaskKind;
  /** The input column each field came from. */
  columns: ColumnMapping;
  /** Classification: the sorted set of train labels; a label's index is its class id. */
  labels?: string[];
  rows: Record<SplitName, number>;
  /** The split rule used (the fractions are 0 for a split given as a file). */
  split: { validation: number; test: number; seed: number; files: { validation?: string; test?: string } };
  source: {
    files: string[];
    format: DataFormat;
    formats: DataFormat[];
    encoding: TextEncoding;
    bytes: number[];
    sha256: string[];
  };
  stats: DatasetStats;
  created: string;
}

export type DatasetErrorCode =
  | 'bad-options'
  | 'not-found'
  | 'too-large'
  | 'unknown-format'
  | 'bad-encoding'
  | 'empty-file'
  | 'header-only'
  | 'bad-header'
  | 'missing-column'
  | 'ragged-row'
  | 'csv-syntax'
  | 'invalid-json'
  | 'bad-row'
  | 'bad-conversation'
  | 'missing-value'
  | 'empty-value'
  | 'bad-number'
  | 'unknown-label'
  | 'too-many-labels'
  | 'no-train-rows'
  | 'bad-dataset';

/** A problem with the input, located as precisely as the format allows. */
export class DatasetError extends Error {
  readonly code: DatasetErrorCode;
  readonly file?: string;
  /** 1-based line (CSV, TSV, JSONL) where the row starts. */
  readonly line?: number;
  /** 1-based item of a JSON array. */
  readonly item?: number;
  readonly column?: string;
  /** chat: the 1-based message of the conversation. */
  readonly messageIndex?: number;
  constructor(
    code: DatasetErrorCode,
    message: string,
    where: { file?: string; line?: number; item?: number; column?: string; messageIndex?: number } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DatasetError';
    this.code = code;
    this.file = where.file;
    this.line = where.line;
    this.item = where.item;
    this.column = where.column;
    this.messageIndex = where.messageIndex;
  }
}
