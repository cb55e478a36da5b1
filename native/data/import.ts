// The dataset importer: CSV / TSV / JSONL / JSON in, a normalised, versioned copy out.
//
// destDir/train.jsonl, validation.jsonl, test.jsonl: one normalised row a line ({text, label} for classification,
// …: see TASK_FIELDS), and destDir/dataset.json: the DatasetVersion. Everything is written into a temp folder beside
// destDir (files fsynced) that is renamed onto destDir at the end, so a failed import leaves destDir as it was.
//
// The digest (the dataset's version) is sha256 over the normalised rows in input order, each tagged with its split:
// the same rows give the same digest whatever the file format, quoting or encoding; one changed value changes it.
// A row's split is a pure function of (seed, sha256 of the row), so the same data and seed give the same split,
// adding rows moves no other row, and equal rows always share a split (no duplicate leaks from train to test). One
// exception: when a validation fraction was asked for and no row fell into it (a few rows, or many copies of a few),
// the distinct row nearest to it goes to validation with its copies — if train keeps a row of every label — so that a
// run is evaluated on something.
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../files/atomic.js';
import { asDiskFull, checkFreeSpace, type SpaceNeed } from '../files/disk.js';
import { parseTemp, tempName, tempState } from '../files/temp.js';
import { normaliseChat } from './chat.js';
import { formatOf, readRows, type RawRow, type ReadContext } from './readers.js';
import { DATASET_FILE, readDatasetVersion, splitFile } from './store.js';
import {
  DatasetError,
  ROLES,
  SPLITS,
  type ColumnMapping,
  type DataFormat,
  type DatasetStats,
  type DatasetVersion,
  type Example,
  type FieldStats,
  type ImportOptions,
  type Role,
  type SplitName,
  type TaskKind,
  type TextEncoding,
} from './types.js';

export const DEFAULT_MAX_BYTES = 1024 ** 3;
/** More distinct classification labels than this means the label column is most likely the wrong one. */
export const MAX_LABELS = 10_000;

/** Column names tried, in order, for each field when the mapping does not name one (exact, then ignoring case). */
export const DEFAULT_COLUMNS: Record<TaskKind, Partial<Record<Role, string[]>>> = {
  classification: { text: ['text', 'sentence'], label: ['label'] },
  'pair-classification': {
    text: ['text', 'sentence1', 'premise'],
    text_pair: ['text_pair', 'sentence2', 'hypothesis'],
    label: ['label'],
  },
  regression: { text: ['text', 'sentence'], label: ['label', 'score'] },
  'causal-lm': { prompt: ['prompt'], completion: ['completion'], text: ['text'] },
  seq2seq: { source: ['source'], target: ['target'] },
  chat: {
    messages: ['messages', 'conversations', 'conversation', 'chat', 'dialog', 'dialogue'],
    instruction: ['instruction'],
    input: ['input', 'context'],
    output: ['output', 'response'],
    system: ['system', 'system_prompt'],
  },
};

/**
 * The columns a task reads; causal-lm has two shapes (prompt + completion, or text), chat two (a list of messages, or
 * alpaca's instruction + output).
 */
export const TASK_FIELDS: Record<TaskKind, Role[][]> = {
  classification: [['text', 'label']],
  'pair-classification': [['text', 'text_pair', 'label']],
  regression: [['text', 'label']],
  'causal-lm': [['prompt', 'completion'], ['text']],
  seq2seq: [['source', 'target']],
  chat: [['messages'], ['instruction', 'output']],
};

/** Columns a shape reads when the file has them (by TASK_FIELDS shape): alpaca's input, a system prompt. */
export const OPTIONAL_FIELDS: Partial<Record<TaskKind, Role[][]>> = {
  chat: [['system'], ['input', 'system']],
};

const TASKS = Object.keys(TASK_FIELDS) as TaskKind[];
const ENCODINGS: TextEncoding[] = ['utf-8', 'utf-16le', 'latin1'];
const quoted = (names: readonly string[]): string => names.map((n) => `'${n}'`).join(', ');

interface Options {
  task: TaskKind;
  columns: ColumnMapping;
  format?: DataFormat;
  encoding?: TextEncoding;
  validation: number;
  test: number;
  seed: number;
  files: { validation?: string; test?: string };
  maxBytes: number;
  headerless?: string[];
}

function checkOptions(opts: ImportOptions): Options {
  if (opts === null || typeof opts !== 'object')
    throw new DatasetError('bad-options', 'importDataset: options are required ({ task: … })');
  if (!TASKS.includes(opts.task))
    throw new DatasetError('bad-options', `unknown task "${String(opts.task)}" (expected ${TASKS.join(', ')})`);
  if (opts.encoding !== undefined && !ENCODINGS.includes(opts.encoding))
    throw new DatasetError(
      'bad-options',
      `unknown encoding "${String(opts.encoding)}" (expected ${ENCODINGS.join(', ')})`,
    );
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (!(Number.isFinite(maxBytes) && maxBytes > 0))
    throw new DatasetError('bad-options', `maxBytes must be a positive number, got ${String(opts.maxBytes)}`);
  const files = { ...(opts.files ?? {}) };
  for (const k of ['validation', 'test'] as const) {
    if (files[k] !== undefined && (typeof files[k] !== 'string' || files[k] === ''))
      throw new DatasetError('bad-options', `files.${k} must be a file path`);
    if (files[k] !== undefined) files[k] = resolve(files[k]);
  }
  const frac = (k: 'validation' | 'test', dflt: number): number => {
    if (files[k] !== undefined) return 0; // given as a file: not carved out of the input
    const v = opts.split?.[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v >= 1)
      throw new DatasetError('bad-options', `split.${k} must be a fraction in [0, 1), got ${String(v)}`);
    return v;
  };
  const validation = frac('validation', 0.1);
  const test = frac('test', 0);
  if (validation + test >= 1)
    throw new DatasetError(
      'bad-options',
      `split.validation + split.test must be under 1 (got ${validation} + ${test}): nothing would be left to train on`,
    );
  const seed = opts.split?.seed ?? 0;
  if (!Number.isSafeInteger(seed))
    throw new DatasetError('bad-options', `split.seed must be an integer, got ${String(seed)}`);
  const columns: ColumnMapping = {};
  const allowed = new Set([...TASK_FIELDS[opts.task].flat(), ...(OPTIONAL_FIELDS[opts.task]?.flat() ?? [])]);
  for (const [role, col] of Object.entries(opts.columns ?? {})) {
    if (col === undefined) continue;
    if (!(ROLES as readonly string[]).includes(role))
      throw new DatasetError('bad-options', `columns.${role}: unknown field (fields: ${ROLES.join(', ')})`);
    if (!allowed.has(role as Role))
      throw new DatasetError(
        'bad-options',
        `columns.${role}: the ${opts.task} task has no ${role} field (it uses ${[...allowed].join(', ')})`,
      );
    if (typeof col !== 'string' || col === '')
      throw new DatasetError('bad-options', `columns.${role} must be a column name, got ${JSON.stringify(col)}`);
    columns[role as Role] = col;
  }
  return {
    task: opts.task,
    columns,
    format: opts.format,
    encoding: opts.encoding,
    validation,
    test,
    seed,
    files,
    maxBytes,
    headerless: checkHeaderless(opts.headerless),
  };
}

/** Column names given for a file without a header line: names, once each. */
function checkHeaderless(names: unknown): string[] | undefined {
  if (names === undefined) return undefined;
  if (!Array.isArray(names) || names.length === 0 || !names.every((n) => typeof n === 'string' && n.trim() !== ''))
    throw new DatasetError(
      'bad-options',
      "headerless: give the names of the file's columns, in order (e.g. text, label)",
    );
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new DatasetError('bad-options', `headerless: column "${dup}" is named twice`);
  return names.map((n: string) => n.trim());
}

/**
 * A first line that reads like a row (a "name" with spaces in it, or a number) is probably not a header: say how to
 * name the columns of a file that has none.
 */
function headerlessHint(header: string[]): string {
  if (!header.some((h) => /\s/.test(h.trim()) || (h.trim() !== '' && Number.isFinite(Number(h))))) return '';
  return `; if the file has no header line (its first line is a row), name its columns (the CLI: --columns ${quotedList(header.length)})`;
}

/** An example of `--columns` for a file of `n` columns. */
const quotedList = (n: number): string =>
  (n === 2
    ? ['text', 'label']
    : n === 3
      ? ['text', 'text_pair', 'label']
      : Array.from({ length: n }, (_, i) => `c${i + 1}`)
  ).join(',');

/** Which input column feeds each field: the user's mapping, else the task's defaults, checked against the header. */
export function resolveColumns(
  task: TaskKind,
  user: ColumnMapping,
  header: string[],
  file: string,
  firstRow?: string,
): ColumnMapping {
  const present =
    firstRow === undefined
      ? `columns present: ${quoted(header)}`
      : `keys of the first row (${firstRow}): ${quoted(header)}`;
  const find = (names: string[]): string | undefined =>
    names.find((n) => header.includes(n)) ??
    names.map((n) => header.find((h) => h.toLowerCase() === n.toLowerCase())).find((h) => h !== undefined);
  const shapes = TASK_FIELDS[task];
  const optional = OPTIONAL_FIELDS[task] ?? [];
  let shape = 0;
  if (shapes.length > 1) {
    // causal-lm and chat: the shape the mapping names (a column only it reads), else the first the file has.
    const own = (i: number): Role[] =>
      [...shapes[i], ...(optional[i] ?? [])].filter((r) => !shapes.some((o, j) => j !== i && o.includes(r)));
    const named = shapes.map((_, i) => i).filter((i) => own(i).some((r) => user[r] !== undefined));
    if (named.length > 1)
      throw new DatasetError(
        'bad-options',
        `columns: map either ${shapes.map((s) => s.join(' + ')).join(' or ')}, not both`,
      );
    const found = shapes.findIndex((s) => s.every((r) => find(DEFAULT_COLUMNS[task][r] ?? []) !== undefined));
    if (named.length === 0 && found < 0) {
      const flags = shapes.map((s) => s.map((r) => `--${r.replace('_', '-')} C`).join(' ')).join(', or ');
      throw new DatasetError(
        'missing-column',
        `${file}: no columns for the ${task} task: it needs ${shapes.map((s) => quoted(s)).join(' or ')}; ${present}. Name the columns that hold them (the CLI: ${flags}; the app: the column mapping)${headerlessHint(header)}`,
        { file },
      );
    }
    shape = named[0] ?? found;
  }
  const fields: Role[] = shapes[shape];
  const out: ColumnMapping = {};
  for (const role of fields) {
    const want = user[role];
    if (want !== undefined) {
      if (!header.includes(want)) {
        const near = header.find((h) => h.toLowerCase() === want.toLowerCase());
        throw new DatasetError(
          'missing-column',
          `${file}: column '${want}' (mapped to ${role}) is not in the file${near ? ` (did you mean '${near}'?)` : ''}; ${present}`,
          { file, column: want },
        );
      }
      out[role] = want;
    } else {
      const names = DEFAULT_COLUMNS[task][role] ?? [];
      const got = find(names);
      if (got === undefined) {
        throw new DatasetError(
          'missing-column',
          `${file}: no column for ${role} (looked for ${quoted(names)}); ${present}. Name it (the CLI: --${role.replace('_', '-')} COLUMN; the app: the column mapping)${headerlessHint(header)}`,
          { file, column: names[0] },
        );
      }
      out[role] = got;
    }
  }
  for (const role of optional[shape] ?? []) {
    const want = user[role];
    if (want !== undefined) {
      if (!header.includes(want))
        throw new DatasetError(
          'missing-column',
          `${file}: column '${want}' (mapped to ${role}) is not in the file; ${present}`,
          { file, column: want },
        );
      out[role] = want;
    } else {
      const got = find(DEFAULT_COLUMNS[task][role] ?? []);
      if (got !== undefined && !Object.values(out).includes(got)) out[role] = got;
    }
  }
  const used = new Map<string, Role>();
  for (const role of [...fields, ...(optional[shape] ?? [])].filter((r) => out[r] !== undefined)) {
    const col = out[role] as string;
    const other = used.get(col);
    if (other !== undefined)
      throw new DatasetError('bad-options', `${file}: column '${col}' is mapped to both ${other} and ${role}`, {
        file,
        column: col,
      });
    used.set(col, role);
  }
  return out;
}

const FLOAT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function where(file: string, row: RawRow): string {
  return row.line !== undefined ? `${file}: line ${row.line}` : `${file}: item ${row.item}`;
}

/** One raw row to a normalised Example (fields in ROLES order, which fixes its JSON form). */
function normalise(task: TaskKind, fields: Role[], mapping: ColumnMapping, file: string, row: RawRow): Example {
  const ex: Example = {};
  for (const role of ROLES) {
    if (!fields.includes(role)) continue;
    const col = mapping[role] as string;
    const at = { file, line: row.line, item: row.item, column: col };
    const raw = row.get(col);
    if (raw === undefined || raw === null) {
      throw new DatasetError(
        'missing-value',
        `${where(file, row)}, column '${col}': missing value (every row needs ${role === 'label' ? 'a label' : `a ${role}`})`,
        at,
      );
    }
    if (typeof raw === 'object') {
      throw new DatasetError(
        'bad-row',
        `${where(file, row)}, column '${col}': expected ${role === 'label' && task === 'regression' ? 'a number' : 'a string'}, got ${Array.isArray(raw) ? 'an array' : 'an object'}`,
        at,
      );
    }
    if (role === 'label' && task === 'regression') {
      let n: number;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string' && FLOAT.test(raw.trim())) n = Number(raw.trim());
      else n = NaN;
      if (typeof raw === 'string' && raw.trim() === '') {
        throw new DatasetError(
          'empty-value',
          `${where(file, row)}, column '${col}': empty value (a regression label must be a finite number)`,
          at,
        );
      }
      if (!Number.isFinite(n)) {
        throw new DatasetError(
          'bad-number',
          `${where(file, row)}, column '${col}': ${JSON.stringify(raw)} is not a finite number (regression labels must be numbers such as 3, -0.5 or 1e-3)`,
          at,
        );
      }
      ex.label = n === 0 ? 0 : n; // -0 and 0 are one label
      continue;
    }
    const s = role === 'label' ? String(raw).trim() : String(raw);
    if (s.trim() === '') {
      const why =
        role === 'label'
          ? 'every row needs a label'
          : role === 'text_pair'
            ? 'a pair task needs both texts'
            : `the ${role} is required`;
      throw new DatasetError('empty-value', `${where(file, row)}, column '${col}': empty value (${why})`, at);
    }
    (ex as Record<string, unknown>)[role] = s;
  }
  return ex;
}

/** sha256 of a row's canonical JSON; the split and the duplicate check are functions of it. */
const rowHash = (json: string): Buffer => createHash('sha256').update(json).digest();

/** A uniform number in [0, 1) from (seed, row hash). */
export function splitPoint(seed: number, rowDigest: Buffer): number {
  return (
    createHash('sha256').update(`delta-studio split ${seed}:`).update(rowDigest).digest().readUIntBE(0, 6) / 2 ** 48
  );
}

/** A growable Float64Array. */
class GrowFloat64 {
  private buf = new Float64Array(1024);
  private n = 0;
  push(v: number): void {
    if (this.n === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = v;
  }
  values(): Float64Array {
    return this.buf.subarray(0, this.n);
  }
}

/** How many values equal an earlier one (8 bytes a row instead of a set of strings: large files stay small in memory). */
function countDuplicates(keys: Float64Array): number {
  const sorted = keys.slice().sort();
  let dups = 0;
  for (let i = 1; i < sorted.length; i++) if (sorted[i] === sorted[i - 1]) dups++;
  return dups;
}

/** Appends lines to a file with large writes; `close` fsyncs. */
class LineWriter {
  private fd: number;
  private parts: string[] = [];
  private size = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'wx', 0o644);
  }
  write(line: string): void {
    this.parts.push(line, '\n');
    this.size += line.length + 1;
    if (this.size >= 1 << 20) this.flush();
  }
  private flush(): void {
    if (this.parts.length === 0) return;
    const buf = Buffer.from(this.parts.join(''), 'utf8');
    this.parts = [];
    this.size = 0;
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
  }
  close(): void {
    this.flush();
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = -1;
  }
  abandon(): void {
    if (this.fd >= 0)
      try {
        closeSync(this.fd);
      } catch {
        /* closed */
      }
    this.fd = -1;
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* some filesystems refuse fsync on directories */
  }
}

function checkInputFile(file: string, maxBytes: number, role: string): number {
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new DatasetError('not-found', `${file}: ${role} file not found`, { file });
  }
  if (!st.isFile()) throw new DatasetError('not-found', `${file}: ${role} file is not a file`, { file });
  if (st.size > maxBytes) {
    throw new DatasetError(
      'too-large',
      `${file}: ${st.size} bytes${human(st.size)} is over the limit of ${maxBytes} bytes${human(maxBytes)} (maxBytes); raise maxBytes to import it`,
      { file },
    );
  }
  return st.size;
}

/** " (1.5 MiB)" for sizes of a KiB and more, else nothing. */
function human(n: number): string {
  const units: [number, string][] = [
    [1024 ** 3, 'GiB'],
    [1024 ** 2, 'MiB'],
    [1024, 'KiB'],
  ];
  const u = units.find(([size]) => n >= size);
  return u ? ` (${(n / u[0]).toFixed(1)} ${u[1]})` : '';
}

class FieldAcc {
  min = Infinity;
  max = 0;
  sum = 0;
  n = 0;
  add(len: number): void {
    if (len < this.min) this.min = len;
    if (len > this.max) this.max = len;
    this.sum += len;
    this.n++;
  }
  get stats(): FieldStats {
    return { minChars: this.n ? this.min : 0, maxChars: this.max, meanChars: this.n ? this.sum / this.n : 0 };
  }
}

/** Where each split's rows went in one pass over the inputs, with what the checks and statistics need. */
interface SplitPass {
  digest: string;
  rows: Record<SplitName, number>;
  fieldAcc: Map<Role, FieldAcc>;
  labelCounts: Record<SplitName, Map<string, number>>;
  unseen: Map<string, { where: string; split: SplitName; file: string; line?: number; item?: number }>;
  reg: { n: number; mean: number; m2: number; min: number; max: number };
  duplicates: number;
  skipped: number;
  mapping: ColumnMapping;
  results: ReadContext['result'][];
  /** The train row that would go to validation if none did: nearest to it, its label kept in train by another row. */
  nearest?: Buffer;
  /** chat: assistant turns per conversation, and conversations with a system message. */
  turns?: DatasetStats['turns'];
}

type Input = { file: string; split?: SplitName; role: string };

/** Reads every input once, writing each row to its split's file in `tmp`; `toValidation` moves one row (and its copies). */
async function writeSplits(
  inputs: Input[],
  formats: DataFormat[],
  opts: Options,
  tmp: string,
  toValidation?: Buffer,
): Promise<SplitPass> {
  const writers = Object.fromEntries(SPLITS.map((s) => [s, new LineWriter(splitFile(tmp, s))])) as Record<
    SplitName,
    LineWriter
  >;
  try {
    const digest = createHash('sha256').update(`delta-studio dataset v1\ntask ${opts.task}\n`);
    const rows: Record<SplitName, number> = { train: 0, validation: 0, test: 0 };
    const fieldAcc = new Map<Role, FieldAcc>();
    const labelCounts: Record<SplitName, Map<string, number>> = {
      train: new Map(),
      validation: new Map(),
      test: new Map(),
    };
    const unseen = new Map<string, { where: string; split: SplitName; file: string; line?: number; item?: number }>();
    const reg = { n: 0, mean: 0, m2: 0, min: Infinity, max: -Infinity };
    const rowKeys = new GrowFloat64(); // 53 bits of each row's hash: duplicates are counted at the end by sorting
    // Per label (one bucket for other tasks): its first train row, whether another distinct one exists, and the row
    // nearest to the validation band.
    const nearest = new Map<string, { first: Buffer; another: boolean; u: number; hash: Buffer }>();
    let skipped = 0;
    const turns = new FieldAcc();
    let withSystem = 0;
    let mapping: ColumnMapping | undefined;
    let fields: Role[] = [];
    const results: ReadContext['result'][] = [];
    const classification = opts.task === 'classification' || opts.task === 'pair-classification';

    for (let f = 0; f < inputs.length; f++) {
      const input = inputs[f];
      const ctx: ReadContext = {
        file: input.file,
        format: formats[f],
        encoding: opts.encoding,
        maxBytes: opts.maxBytes,
        result: { bytes: 0, sha256: '' },
        skipped: 0,
        columns: formats[f] === 'csv' || formats[f] === 'tsv' ? opts.headerless : undefined,
      };
      for await (const ev of readRows(ctx)) {
        if (ev.kind === 'header') {
          if (mapping === undefined) {
            mapping = resolveColumns(opts.task, opts.columns, ev.columns, input.file, ev.firstRow);
            fields = ROLES.filter((r) => mapping?.[r] !== undefined);
          } else {
            // Split files use the columns resolved on the input file.
            for (const role of fields) {
              const col = mapping[role] as string;
              if (OPTIONAL_FIELDS[opts.task]?.flat().includes(role)) continue; // rows may lack it
              if (!ev.columns.includes(col))
                throw new DatasetError(
                  'missing-column',
                  `${input.file}: column '${col}' (${role}, as in ${inputs[0].file}) is not in the file; ${ev.firstRow === undefined ? 'columns present' : `keys of the first row (${ev.firstRow})`}: ${quoted(ev.columns)}`,
                  { file: input.file, column: col },
                );
            }
          }
          continue;
        }
        const ex =
          opts.task === 'chat'
            ? normaliseChat(mapping as ColumnMapping, input.file, ev)
            : normalise(opts.task, fields, mapping as ColumnMapping, input.file, ev);
        const json = JSON.stringify(ex);
        const h = rowHash(json);
        let split: SplitName;
        if (input.split !== undefined) {
          split = input.split;
        } else if (toValidation?.equals(h)) {
          split = 'validation';
        } else {
          const u = splitPoint(opts.seed, h);
          split = u < opts.test ? 'test' : u < opts.test + opts.validation ? 'validation' : 'train';
          if (split === 'train') {
            const key = classification ? String(ex.label) : '';
            const at = nearest.get(key);
            if (!at) nearest.set(key, { first: h, another: false, u, hash: h });
            else {
              at.another ||= !at.first.equals(h);
              if (u < at.u) Object.assign(at, { u, hash: h });
            }
          }
        }
        digest.update(`${split}\t${json}\n`);
        writers[split].write(json);
        rows[split]++;
        rowKeys.push(h.readUIntBE(0, 6) * 32 + (h[6] >>> 3));
        const field = (role: Role, length: number): void => {
          let acc = fieldAcc.get(role);
          if (!acc) fieldAcc.set(role, (acc = new FieldAcc()));
          acc.add(length);
        };
        if (ex.messages) {
          // A conversation's length is its messages' text; its turns are the assistant's replies.
          field(
            'messages',
            ex.messages.reduce((a, m) => a + m.content.length, 0),
          );
          turns.add(ex.messages.filter((m) => m.role === 'assistant').length);
          if (ex.messages[0].role === 'system') withSystem++;
        } else
          for (const role of fields)
            if (role !== 'label') field(role, ((ex as Record<string, unknown>)[role] as string).length);
        if (classification) {
          const label = ex.label as string;
          const counts = labelCounts[split];
          counts.set(label, (counts.get(label) ?? 0) + 1);
          if (split === 'train') {
            if (counts.size > MAX_LABELS) {
              throw new DatasetError(
                'too-many-labels',
                `${input.file}: column '${mapping?.label}' has more than ${MAX_LABELS} distinct labels: is it the label column? (for numeric targets use the regression task)`,
                { file: input.file, column: mapping?.label },
              );
            }
          } else if (!unseen.has(label)) {
            unseen.set(label, { where: where(input.file, ev), split, file: input.file, line: ev.line, item: ev.item });
          }
        } else if (opts.task === 'regression') {
          const y = ex.label as number;
          reg.n++;
          const d = y - reg.mean;
          reg.mean += d / reg.n;
          reg.m2 += d * (y - reg.mean);
          if (y < reg.min) reg.min = y;
          if (y > reg.max) reg.max = y;
        }
      }
      skipped += ctx.skipped;
      results.push(ctx.result);
    }
    for (const s of SPLITS) writers[s].close();
    const movable = [...nearest.values()].filter((n) => n.another);
    return {
      digest: digest.digest('hex'),
      rows,
      fieldAcc,
      labelCounts,
      unseen,
      reg,
      duplicates: countDuplicates(rowKeys.values()),
      skipped,
      mapping: mapping as ColumnMapping,
      results,
      nearest: movable.length ? movable.reduce((a, b) => (b.u < a.u ? b : a)).hash : undefined,
      ...(opts.task === 'chat'
        ? { turns: { min: turns.stats.minChars, max: turns.stats.maxChars, mean: turns.stats.meanChars, withSystem } }
        : {}),
    };
  } catch (e) {
    for (const s of SPLITS) writers[s].abandon();
    throw e;
  }
}

/** What an import writes, about: the normalised rows (JSON a line is larger than CSV), and its statistics. */
function importNeed(file: string, bytes: number): SpaceNeed {
  return { bytes: Math.round(bytes * 1.5) + 64 * 1024, what: `importing ${basename(file)}`, then: 'import it again' };
}

/**
 * Imports `inputFile` (plus the split files of `opts.files`) into `destDir`, replacing what was there only when the
 * whole import succeeded. Returns the DatasetVersion written to destDir/dataset.json. An import that will not fit on
 * the disk is refused before it writes, and one that fills the disk fails with the same message (a DiskFullError).
 */
export async function importDataset(
  inputFile: string,
  destDir: string,
  options: ImportOptions,
): Promise<DatasetVersion> {
  const opts = checkOptions(options);
  const dest = resolve(destDir);
  checkDestination(dest);
  const inputs: Input[] = [{ file: resolve(inputFile), role: 'input' }];
  if (opts.files.validation) inputs.push({ file: opts.files.validation, split: 'validation', role: 'validation' });
  if (opts.files.test) inputs.push({ file: opts.files.test, split: 'test', role: 'test' });
  const formats = inputs.map((i) => formatOf(i.file, opts.format));
  const bytes = inputs.reduce((a, i) => a + checkInputFile(i.file, opts.maxBytes, i.role), 0);

  const parent = dirname(dest);
  const need = importNeed(inputs[0].file, bytes);
  let tmp: string | undefined;
  try {
    mkdirSync(parent, { recursive: true });
    checkFreeSpace(parent, need);
    removeStale(parent, `${basename(dest)}.importing`);
    removeStale(parent, `${basename(dest)}.replaced`);
    tmp = join(parent, tempName(`${basename(dest)}.importing`));
    mkdirSync(tmp);
    let pass = await writeSplits(inputs, formats, opts, tmp);
    if (pass.rows.validation === 0 && opts.validation > 0 && pass.nearest) {
      for (const s of SPLITS) rmSync(splitFile(tmp, s));
      pass = await writeSplits(inputs, formats, opts, tmp, pass.nearest);
    }
    const { rows, labelCounts, unseen, reg, mapping, results } = pass;
    const classification = opts.task === 'classification' || opts.task === 'pair-classification';

    if (rows.train === 0) {
      throw new DatasetError(
        'no-train-rows',
        `${inputs[0].file}: no rows went to train (${rows.validation} validation, ${rows.test} test): lower split.validation / split.test or add rows`,
        { file: inputs[0].file },
      );
    }
    let labels: string[] | undefined;
    if (classification) {
      const train = labelCounts.train;
      labels = [...train.keys()].sort();
      for (const [label, at] of unseen) {
        if (train.has(label)) continue;
        const shown = labels.length > 20 ? `${quoted(labels.slice(0, 20))}, … (${labels.length})` : quoted(labels);
        throw new DatasetError(
          'unknown-label',
          `${at.where}, column '${mapping?.label}': label '${label}' is in the ${at.split} split but never in train (train labels: ${shown}); ` +
            `a model cannot learn it: add train rows with this label, fix the label, or remove the row`,
          { file: at.file, line: at.line, item: at.item, column: mapping?.label },
        );
      }
    }

    const stats: DatasetStats = {
      fields: Object.fromEntries([...pass.fieldAcc].map(([r, a]) => [r, a.stats])),
      duplicates: pass.duplicates,
      skippedBlank: pass.skipped,
      ...(pass.turns ? { turns: pass.turns } : {}),
    };
    if (classification) {
      stats.labelCounts = Object.fromEntries(
        SPLITS.map((s) => [
          s,
          Object.fromEntries([...labelCounts[s]].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
        ]),
      ) as DatasetStats['labelCounts'];
    }
    if (opts.task === 'regression') {
      stats.labelRange = {
        min: reg.min,
        max: reg.max,
        mean: reg.mean,
        std: reg.n > 1 ? Math.sqrt(reg.m2 / (reg.n - 1)) : 0,
      };
    }
    const version: DatasetVersion = {
      version: 1,
      digest: pass.digest,
      task: opts.task,
      columns: mapping,
      ...(labels ? { labels } : {}),
      rows,
      split: { validation: opts.validation, test: opts.test, seed: opts.seed, files: opts.files },
      source: {
        files: inputs.map((i) => i.file),
        format: formats[0],
        formats,
        encoding: results[0].encoding ?? opts.encoding ?? 'utf-8',
        bytes: results.map((r) => r.bytes),
        sha256: results.map((r) => r.sha256),
      },
      stats,
      created: new Date().toISOString(),
    };
    writeFileAtomic(join(tmp, DATASET_FILE), Buffer.from(`${JSON.stringify(version, null, 2)}\n`));
    fsyncDir(tmp);
    swapInto(tmp, dest, version.digest);
    return version;
  } catch (e) {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    throw asDiskFull(e, parent, need);
  }
}

/** destDir must be new, an empty folder, or an earlier import (a folder with dataset.json): never someone's other files. */
function checkDestination(dest: string): void {
  if (!existsSync(dest)) return;
  if (!statSync(dest).isDirectory()) throw new DatasetError('bad-options', `${dest}: exists and is not a folder`);
  const names = readdirSync(dest);
  if (names.length > 0 && !names.includes(DATASET_FILE)) {
    throw new DatasetError(
      'bad-options',
      `${dest}: the folder is not empty and holds no ${DATASET_FILE} (it is not an earlier import): choose a new or empty folder, so nothing of yours is replaced`,
    );
  }
}

/**
 * Removes the temp folders of `what` in `dir` (`.<what>.<owner>….tmp`, or the older `.<what>-<pid>-<hex>`) left by a
 * process that no longer runs (a crash mid-import); a live process's are its work in progress.
 */
export function removeStale(dir: string, what: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(`.${what}.`) && !name.startsWith(`.${what}-`)) continue;
    const temp = parseTemp(name);
    if (!temp?.owner || temp.owner.pid === process.pid || tempState(temp.owner) !== 'dead') continue;
    rmSync(join(dir, name), { recursive: true, force: true });
  }
}

/** Puts the finished folder `tmp` at `dest`, replacing an older import (whose token caches move over when the digest is the same). */
function swapInto(tmp: string, dest: string, digest: string): void {
  const parent = dirname(dest);
  if (!existsSync(dest)) {
    renameSync(tmp, dest);
    fsyncDir(parent);
    return;
  }
  try {
    if (readDatasetVersion(dest).digest === digest && existsSync(join(dest, 'cache')))
      renameSync(join(dest, 'cache'), join(tmp, 'cache'));
  } catch {
    /* not a dataset folder, or no cache: nothing to keep */
  }
  const old = join(parent, tempName(`${basename(dest)}.replaced`));
  renameSync(dest, old);
  try {
    renameSync(tmp, dest);
  } catch (e) {
    renameSync(old, dest);
    throw e;
  }
  fsyncDir(parent);
  try {
    rmSync(old, { recursive: true, force: true });
  } catch {
    /* a leftover hidden folder; the import itself is done */
  }
}
