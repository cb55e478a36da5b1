// Datasets: previewing a data file (with a guess of its task and columns), importing it as a content-addressed
// version (the same data imported twice is one folder), and its statistics.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import type {
  ChatExample,
  ColumnMapping,
  DatasetImportResult,
  DatasetPreview,
  DatasetStatsResult,
  DatasetSummary,
  TaskName,
} from '../contract/index.js';
import {
  DEFAULT_MAX_BYTES,
  importDataset,
  normaliseChat,
  readDatasetVersion,
  resolveColumns,
  tokenLengthStats,
  type DatasetVersion,
} from '../data/index.js';
import { formatOf, readRows, type RawRow } from '../data/readers.js';
import { tempName } from '../files/temp.js';
import { assistantSpans, chatTemplateFor, ChatTemplateError, type ChatTemplate } from '../models/chat-template.js';
import { TextTokenizer } from '../models/tokenizer.js';
import type { Workspace } from '../store/workspace.js';
import type { Progress } from './jobs.js';
import { taskName } from './tasks.js';

/** Guesses the task and column mapping from a header (exact names, then ignoring case). */
export function guessTask(
  columns: string[],
  rows: Record<string, string>[],
  file: string,
): { task: TaskName; columns: ColumnMapping } | null {
  const has = (...names: string[]): boolean => names.some((n) => columns.some((c) => c.toLowerCase() === n));
  const order: TaskName[] = [];
  // A list of messages ({role, content} or ShareGPT's {from, value}), or alpaca's instruction + output: a chat.
  const listed = columns.find((c) => looksLikeConversation(rows[0]?.[c]));
  if (listed) return { task: 'chat', columns: { messages: listed } };
  if (has('instruction') && has('output', 'response')) order.push('chat');
  if (has('prompt') && has('completion')) order.push('causal-lm');
  if (has('source') && has('target')) order.push('seq2seq');
  if (has('premise', 'sentence1', 'text_pair') && has('hypothesis', 'sentence2', 'text_pair') && has('label'))
    order.push('pair-classification');
  if (has('text', 'sentence') && has('label', 'score')) {
    const labelCol = columns.find((c) => ['label', 'score'].includes(c.toLowerCase()));
    const values = rows.map((r) => r[labelCol ?? 'label']).filter((v) => v !== undefined && v !== '');
    const numeric = values.length > 0 && values.every((v) => Number.isFinite(Number(v)));
    const fractional = numeric && values.some((v) => !Number.isInteger(Number(v)));
    order.push(fractional || (numeric && labelCol?.toLowerCase() === 'score') ? 'regression' : 'classification');
  }
  if (has('text')) order.push('causal-lm');
  for (const task of order) {
    try {
      return { task, columns: resolveColumns(task, {}, columns, file) };
    } catch {
      // try the next task that could fit
    }
  }
  return null;
}

/** A cell that holds a conversation: a JSON list of messages. */
function looksLikeConversation(cell: string | undefined): boolean {
  if (!cell || !cell.trimStart().startsWith('[')) return false;
  try {
    const v = JSON.parse(cell) as unknown;
    return (
      Array.isArray(v) &&
      v.length > 0 &&
      v.every((m) => m && typeof m === 'object' && (('role' in m && 'content' in m) || ('from' in m && 'value' in m)))
    );
  } catch {
    return false;
  }
}

/** What a preview shows of a chat: its first row as a conversation, and that rendered by a chat template. */
export interface ChatPreviewOptions {
  task?: TaskName;
  columns?: ColumnMapping;
  /** The template that renders it (a model's), when a model is given. */
  template?: () => ChatTemplate;
}

/** The first row as a conversation and, with a template, as the model reads it (assistant parts marked). */
function chatExample(
  file: string,
  header: string[],
  row: RawRow,
  columns: ColumnMapping,
  opts: ChatPreviewOptions,
): ChatExample {
  let messages;
  try {
    messages = normaliseChat(resolveColumns('chat', columns, header, file), file, row).messages ?? [];
  } catch (e) {
    return { messages: [], rendered: null, problem: (e as Error).message };
  }
  if (!opts.template) return { messages, rendered: null, problem: null };
  try {
    const t = opts.template();
    const text = t.render(messages);
    return {
      messages,
      rendered: { text, assistant: assistantSpans(t, messages, text), template: t.name, source: t.source },
      problem: null,
    };
  } catch (e) {
    if (e instanceof ChatTemplateError) return { messages, rendered: null, problem: e.message };
    throw e;
  }
}

/** The format, columns and first `n` rows of a data file, a guess of its task, and a chat's first conversation. */
export async function previewFile(file: string, n: number, chat: ChatPreviewOptions = {}): Promise<DatasetPreview> {
  const format = formatOf(file);
  const ctx = {
    file,
    format,
    encoding: undefined,
    maxBytes: DEFAULT_MAX_BYTES,
    result: { bytes: 0, sha256: '' },
    skipped: 0,
  };
  let columns: string[] = [];
  const rows: Record<string, string>[] = [];
  let first: RawRow | undefined;
  for await (const ev of readRows(ctx)) {
    if (ev.kind === 'header') columns = ev.columns;
    else {
      first ??= ev;
      rows.push(
        Object.fromEntries(
          columns.map((c) => {
            const v = ev.get(c);
            return [c, v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v)];
          }),
        ),
      );
      if (rows.length >= n) break; // leaving the loop closes the reader
    }
  }
  const guess = guessTask(columns, rows, file);
  const task = chat.task ?? guess?.task;
  const example =
    task === 'chat' && first
      ? chatExample(file, columns, first, chat.columns ?? (guess?.task === 'chat' ? guess.columns : {}), chat)
      : null;
  return { path: file, format, columns, rows, guess, example };
}

export interface DatasetImport {
  path: string;
  name: string;
  task: TaskName;
  columns: ColumnMapping;
  /** A file for the validation split (else `validationFraction` of the rows, by seed). */
  validationPath?: string;
  validationFraction: number;
  seed: number;
  /** A CSV/TSV file without a header line: its column names, in order. */
  headerless?: string[];
  /** A held-out test split, from its own file (evaluated once, after training). */
  testPath?: string;
}

export class Datasets {
  constructor(private readonly need: () => Workspace) {}

  /** Imports a data file as a new version of dataset `name`; a version with the same content reuses its folder. */
  async import(p: DatasetImport, progress: Progress = () => {}): Promise<DatasetImportResult> {
    const ws = this.need();
    progress(0, `reading ${basename(p.path)}`);
    const datasets = join(ws.dir, 'datasets');
    mkdirSync(datasets, { recursive: true });
    // Named with this process as its owner: `workspace check --repair` leaves it alone while the import runs.
    const tmp = join(datasets, tempName('import'));
    let version: DatasetVersion;
    try {
      version = await importDataset(resolve(p.path), tmp, {
        task: p.task,
        columns: p.columns,
        split: { validation: p.validationPath ? 0 : p.validationFraction, test: 0, seed: p.seed },
        files: {
          ...(p.validationPath ? { validation: resolve(p.validationPath) } : {}),
          ...(p.testPath ? { test: resolve(p.testPath) } : {}),
        },
        headerless: p.headerless,
      });
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    progress(0.9, 'recording the version');
    const dir = join(datasets, version.digest.slice(0, 16));
    if (existsSync(dir)) rmSync(tmp, { recursive: true, force: true });
    else renameSync(tmp, dir);
    const { datasetId, versionId } = ws.addDatasetVersion(p.name, relative(ws.dir, dir), version);
    progress(1, 'imported');
    return {
      datasetId,
      versionId,
      digest: version.digest,
      task: version.task,
      rows: version.rows,
      labels: version.labels ?? null,
      columns: version.columns,
    };
  }

  preview(
    path: string,
    rows: number,
    chat: { task?: TaskName; columns?: ColumnMapping; modelId?: number; chatTemplate?: string } = {},
  ): Promise<DatasetPreview> {
    const { modelId, chatTemplate } = chat;
    const template =
      modelId === undefined
        ? undefined
        : () => {
            const dir = this.modelDir(modelId);
            return chatTemplateFor(dir, TextTokenizer.fromFolder(dir), chatTemplate);
          };
    return previewFile(resolve(path), rows, { task: chat.task, columns: chat.columns, template });
  }

  private modelDir(modelId: number): string {
    const ws = this.need();
    return ws.modelPath(ws.getModel(modelId));
  }

  list(): DatasetSummary[] {
    return this.need()
      .listDatasets()
      .map((d) => ({
        id: d.id,
        name: d.name,
        versions: d.versions.map((v) => ({
          id: v.id,
          digest: v.digest,
          task: taskName(v.task),
          source: v.source,
          rows: (v.stats as { rows?: DatasetImportResult['rows'] } | null)?.rows ?? null,
          createdAt: v.created_at,
        })),
      }));
  }

  stats(versionId: number, modelId?: number, chatTemplate?: string): DatasetStatsResult {
    const ws = this.need();
    const dir = ws.path(ws.datasetVersion(versionId).dir);
    const v = readDatasetVersion(dir);
    let tokens: DatasetStatsResult['tokens'] = null;
    let tokensProblem: string | null = null;
    if (modelId !== undefined) {
      const modelDir = ws.modelPath(ws.getModel(modelId));
      const tok = TextTokenizer.fromFolder(modelDir);
      try {
        const chat = v.task === 'chat' ? chatTemplateFor(modelDir, tok, chatTemplate) : undefined;
        tokens = tokenLengthStats(dir, tok, chat);
      } catch (e) {
        // A model without a chat template has no token lengths for a chat: said, not failed.
        if (!(e instanceof ChatTemplateError)) throw e;
        tokensProblem = e.message;
      }
    }
    return {
      versionId,
      task: v.task,
      rows: v.rows,
      labels: v.labels ?? null,
      labelCounts: v.stats.labelCounts ?? null,
      labelRange: v.stats.labelRange ?? null,
      fields: v.stats.fields,
      duplicates: v.stats.duplicates,
      tokens,
      turns: v.stats.turns ?? null,
      tokensProblem,
    };
  }
}
