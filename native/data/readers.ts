// Readers of the input formats. Each yields the header (the column names) first, then one raw row at a time with
// where it came from; CSV, TSV and JSONL are streamed (csv-parse for CSV/TSV), a JSON document is read whole.
import { Readable } from 'node:stream';
import { CsvError, parse, type Info } from 'csv-parse';
import { decodeFile, type DecodeResult } from './decode.js';
import { DatasetError, type DataFormat, type TextEncoding } from './types.js';

export interface RawRow {
  kind: 'row';
  /** 1-based line where the row starts (CSV, TSV, JSONL). */
  line?: number;
  /** 1-based item of a JSON array. */
  item?: number;
  get(column: string): unknown;
}
/** `columns`: a CSV/TSV header, or the keys of the first JSON row (`firstRow` says where that row is). */
export type RawEvent = { kind: 'header'; columns: string[]; firstRow?: string } | RawRow;

export interface ReadContext {
  file: string;
  format: DataFormat;
  encoding: TextEncoding | undefined;
  maxBytes: number;
  /** Filled in when reading ends: size and sha256 of the raw bytes. */
  result: DecodeResult;
  /** Blank rows skipped. */
  skipped: number;
  /** CSV/TSV without a header line: these are its columns, in order, and its first line is a row. */
  columns?: string[];
}

const FORMAT_BY_EXT: Record<string, DataFormat> = {
  csv: 'csv',
  tsv: 'tsv',
  tab: 'tsv',
  jsonl: 'jsonl',
  ndjson: 'jsonl',
  json: 'json',
};

export function formatOf(file: string, format?: DataFormat): DataFormat {
  if (format !== undefined) {
    if (!['csv', 'tsv', 'jsonl', 'json'].includes(format))
      throw new DatasetError('bad-options', `unknown format "${String(format)}" (expected csv, tsv, jsonl or json)`);
    return format;
  }
  const m = /\.([A-Za-z0-9]+)$/.exec(file);
  const found = m ? FORMAT_BY_EXT[m[1].toLowerCase()] : undefined;
  if (!found) {
    throw new DatasetError(
      'unknown-format',
      `${file}: cannot tell the format from the extension${m ? ` ".${m[1]}"` : ''} (known: .csv, .tsv, .tab, .jsonl, .ndjson, .json); pass format: 'csv' | 'tsv' | 'jsonl' | 'json'`,
      { file },
    );
  }
  return found;
}

export function readRows(ctx: ReadContext): AsyncGenerator<RawEvent> {
  switch (ctx.format) {
    case 'csv':
      return readDelimited(ctx, ',');
    case 'tsv':
      return readDelimited(ctx, '\t');
    case 'jsonl':
      return readJsonl(ctx);
    case 'json':
      return readJson(ctx);
  }
}

const list = (names: string[]): string => names.map((n) => `'${n}'`).join(', ');

function checkHeader(file: string, columns: string[]): void {
  const seen = new Set<string>();
  columns.forEach((c, i) => {
    if (c === '')
      throw new DatasetError(
        'bad-header',
        `${file}: line 1: column ${i + 1} of the header has no name (header: ${list(columns)})`,
        { file, line: 1 },
      );
    if (seen.has(c))
      throw new DatasetError(
        'bad-header',
        `${file}: line 1: the header names column '${c}' twice (header: ${list(columns)})`,
        { file, line: 1, column: c },
      );
    seen.add(c);
  });
}

async function* readDelimited(ctx: ReadContext, delimiter: string): AsyncGenerator<RawEvent> {
  const { file } = ctx;
  const tsv = delimiter === '\t';
  const parser = parse({
    delimiter,
    bom: true,
    info: true,
    relax_column_count: true, // the column count is checked here, to name the header in the message
    relax_quotes: tsv, // a quote inside an unquoted TSV field is a plain character (as pandas reads TSV)
    skip_empty_lines: true,
    max_record_size: 1 << 24,
  });
  const source = Readable.from(decodeFile(file, ctx.encoding, ctx.maxBytes, ctx.result));
  source.on('error', (e) => parser.destroy(e));
  source.pipe(parser);
  let header: string[] | undefined;
  let index: Map<string, number> | undefined;
  let rows = 0;
  if (ctx.columns) {
    header = ctx.columns;
    checkHeader(file, header);
    index = new Map(header.map((c, i) => [c, i]));
    yield { kind: 'header', columns: header };
  }
  let prevEnd = 0; // the line the previous record ended on
  let prevEmpty = 0;
  try {
    for await (const out of parser as AsyncIterable<{ record: string[]; info: Info }>) {
      const { record, info } = out;
      const line = prevEnd + 1 + (info.empty_lines - prevEmpty);
      prevEnd = info.lines;
      prevEmpty = info.empty_lines;
      if (record.every((f) => f.trim() === '')) {
        ctx.skipped++;
        continue;
      }
      if (header === undefined) {
        header = record.map((c) => c.trim());
        checkHeader(file, header);
        index = new Map(header.map((c, i) => [c, i]));
        yield { kind: 'header', columns: header };
        continue;
      }
      if (record.length !== header.length) {
        const sep = tsv ? 'a tab' : 'a comma';
        const named = ctx.columns ? 'the columns given for the file have' : 'the header has';
        throw new DatasetError(
          'ragged-row',
          `${file}: line ${line}: ${record.length} column${record.length === 1 ? '' : 's'} but ${named} ${header.length} (${list(header)}). ` +
            `A field that contains ${sep}, a quote or a line break must be quoted ("…", with "" for a quote inside)`,
          { file, line },
        );
      }
      rows++;
      const idx = index as Map<string, number>;
      yield {
        kind: 'row',
        line,
        get: (c) => {
          const i = idx.get(c);
          return i === undefined ? undefined : record[i];
        },
      };
    }
  } catch (e) {
    if (e instanceof CsvError) {
      const at = (e as unknown as { lines?: number }).lines;
      if (e.code === 'CSV_QUOTE_NOT_CLOSED') {
        throw new DatasetError(
          'csv-syntax',
          `${file}: line ${prevEnd + 1}: a quoted field opens here and is never closed (the file ends inside it); a quote inside a field is written ""`,
          { file, line: prevEnd + 1 },
          { cause: e },
        );
      }
      throw new DatasetError(
        'csv-syntax',
        `${file}: line ${at ?? prevEnd + 1}: ${e.message}`,
        { file, line: at ?? prevEnd + 1 },
        { cause: e },
      );
    }
    throw e;
  } finally {
    source.destroy();
    parser.destroy();
  }
  if (header === undefined)
    throw new DatasetError('empty-file', `${file}: the file is empty (no header, no rows)`, { file });
  if (rows === 0)
    throw new DatasetError('header-only', `${file}: the file has a header (${list(header)}) but no rows`, { file });
}

function objectRow(
  file: string,
  value: unknown,
  where: string,
  at: { line?: number; item?: number },
): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
    throw new DatasetError(
      'bad-row',
      `${file}: ${where}: expected a JSON object such as {"text": "…", "label": "…"}, got ${got}`,
      { file, ...at },
    );
  }
  return value as Record<string, unknown>;
}

async function* readJsonl(ctx: ReadContext): AsyncGenerator<RawEvent> {
  const { file } = ctx;
  let buf = '';
  let lineNo = 0;
  let rows = 0;
  const take = (text: string): RawEvent[] => {
    lineNo++;
    const t = text.endsWith('\r') ? text.slice(0, -1) : text;
    if (t.trim() === '') {
      ctx.skipped++;
      return [];
    }
    let value: unknown;
    try {
      value = JSON.parse(t);
    } catch (e) {
      throw new DatasetError(
        'invalid-json',
        `${file}: line ${lineNo}: invalid JSON: ${(e as Error).message}`,
        { file, line: lineNo },
        { cause: e },
      );
    }
    const obj = objectRow(file, value, `line ${lineNo}`, { line: lineNo });
    const row: RawRow = { kind: 'row', line: lineNo, get: (c) => (Object.hasOwn(obj, c) ? obj[c] : undefined) };
    return rows++ === 0 ? [{ kind: 'header', columns: Object.keys(obj), firstRow: `line ${lineNo}` }, row] : [row];
  };
  for await (const text of decodeFile(file, ctx.encoding, ctx.maxBytes, ctx.result)) {
    buf += text;
    let start = 0;
    let nl: number;
    while ((nl = buf.indexOf('\n', start)) >= 0) {
      yield* take(buf.slice(start, nl));
      start = nl + 1;
    }
    buf = buf.slice(start);
  }
  if (buf.length > 0) yield* take(buf);
  if (rows === 0) throw new DatasetError('empty-file', `${file}: the file is empty (no JSON lines)`, { file });
}

/** Line and column of a character offset, for JSON.parse errors that give a position. */
function lineCol(text: string, pos: number): { line: number; col: number } {
  let line = 1;
  let lastNl = -1;
  for (let i = 0; i < pos && i < text.length; i++)
    if (text.charCodeAt(i) === 10) {
      line++;
      lastNl = i;
    }
  return { line, col: pos - lastNl };
}

async function* readJson(ctx: ReadContext): AsyncGenerator<RawEvent> {
  const { file } = ctx;
  const parts: string[] = [];
  for await (const text of decodeFile(file, ctx.encoding, ctx.maxBytes, ctx.result)) parts.push(text);
  const text = parts.join('');
  parts.length = 0;
  if (text.trim() === '') throw new DatasetError('empty-file', `${file}: the file is empty`, { file });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const m = /position (\d+)/.exec(msg);
    const at = m ? lineCol(text, Number(m[1])) : undefined;
    throw new DatasetError(
      'invalid-json',
      `${file}: ${at ? `line ${at.line}, column ${at.col}: ` : ''}invalid JSON: ${msg}`,
      { file, line: at?.line },
      { cause: e },
    );
  }
  let items: unknown[];
  if (Array.isArray(doc)) items = doc;
  else if (doc !== null && typeof doc === 'object' && Array.isArray((doc as Record<string, unknown>).data))
    items = (doc as { data: unknown[] }).data;
  else
    throw new DatasetError(
      'invalid-json',
      `${file}: expected an array of objects or {"data": [ … ]}, got ${doc === null ? 'null' : Array.isArray(doc) ? 'an array' : typeof doc === 'object' ? `an object with keys ${list(Object.keys(doc as object))}` : typeof doc}`,
      { file },
    );
  if (items.length === 0) throw new DatasetError('empty-file', `${file}: the JSON array is empty (no rows)`, { file });
  for (let i = 0; i < items.length; i++) {
    const obj = objectRow(file, items[i], `item ${i + 1}`, { item: i + 1 });
    if (i === 0) yield { kind: 'header', columns: Object.keys(obj), firstRow: 'item 1' };
    yield { kind: 'row', item: i + 1, get: (c) => (Object.hasOwn(obj, c) ? obj[c] : undefined) };
  }
}
