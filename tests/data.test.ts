// The dataset importer: formats, column mapping, labels, regression values, every malformed input with its message,
// seeded splits, the digest as the version, atomic writes, a streamed 50 MB import, token statistics and the
// tokenization cache. Token ids come from tests/fixtures/tokenizers/wordpiece: [PAD]0 [UNK]1 [CLS]2 [SEP]3 [MASK]4
// the5 cat6 sat7 on8 mat9 a10 dog11 ran12 play13 ##ing14 ##s15 .16 ,17 is18 it19 ?20 hello21 world22 !23;
// gpt2: t=83 he=257 Ġcat=261 <|endoftext|>=269.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextTokenizer } from '../native/models/tokenizer.js';
import {
  DatasetError,
  importDataset,
  loadSplit,
  missingValidation,
  readDatasetVersion,
  splitPoint,
  readSplit,
  tokenLengthStats,
  tokenizeCached,
  firstInvalidUtf8,
  type DataTokenizer,
  type Example,
  type ImportOptions,
} from '../native/data/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const TOK = join(here, 'fixtures', 'tokenizers');
const FIX = join(here, 'fixtures', 'data');

function tmpDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'ds-data-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function put(dir: string, name: string, content: string | Uint8Array): string {
  const file = join(dir, name);
  writeFileSync(file, content);
  return file;
}

const NOSPLIT = { validation: 0, test: 0, seed: 0 };

async function failure(p: Promise<unknown>): Promise<DatasetError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DatasetError, `expected a DatasetError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the import to fail');
}

/** What is left in `dir` apart from `keep`: temp folders of a failed import would show here. */
const leftovers = (dir: string, keep: string[]): string[] => readdirSync(dir).filter((n) => !keep.includes(n));

test('CSV: quoted commas, line breaks and escaped quotes, CRLF and a BOM', async (t) => {
  const dir = tmpDir(t);
  const file = put(
    dir,
    'reviews.csv',
    '\uFEFFtext,label\r\n"Hello, world",pos\r\n"multi\nline ""quoted"" text",neg\r\n\r\nplain text,pos\r\n',
  );
  const v = await importDataset(file, join(dir, 'out'), { task: 'classification', split: NOSPLIT });
  assert.deepEqual(loadSplit(join(dir, 'out'), 'train'), [
    { text: 'Hello, world', label: 'pos' },
    { text: 'multi\nline "quoted" text', label: 'neg' },
    { text: 'plain text', label: 'pos' },
  ]);
  assert.deepEqual(v.columns, { text: 'text', label: 'label' });
  assert.deepEqual(v.labels, ['neg', 'pos']);
  assert.deepEqual(v.rows, { train: 3, validation: 0, test: 0 });
  assert.equal(v.source.format, 'csv');
  assert.equal(v.source.bytes[0], readFileSync(file).length);
  assert.deepEqual(v.stats.labelCounts, { train: { neg: 1, pos: 2 }, validation: {}, test: {} });
  assert.deepEqual(v.stats.fields.text, { minChars: 10, maxChars: 24, meanChars: 46 / 3 });
  assert.equal(v.stats.skippedBlank, 0); // an empty line is skipped by the parser itself
  assert.match(v.digest, /^[0-9a-f]{64}$/);
  // dataset.json is the DatasetVersion; the folder holds only the finished files.
  assert.deepEqual(readDatasetVersion(join(dir, 'out')), v);
  assert.deepEqual(readdirSync(join(dir, 'out')).sort(), [
    'dataset.json',
    'test.jsonl',
    'train.jsonl',
    'validation.jsonl',
  ]);
  assert.equal(
    readFileSync(join(dir, 'out', 'train.jsonl'), 'utf8').split('\n')[0],
    '{"text":"Hello, world","label":"pos"}',
  );
  const streamed: Example[] = [];
  for await (const ex of readSplit(join(dir, 'out'), 'train')) streamed.push(ex);
  assert.equal(streamed.length, 3);
  assert.equal(streamed[1].text, 'multi\nline "quoted" text');
});

test('TSV, JSONL (.ndjson), a JSON array and {"data": [...]}', async (t) => {
  const dir = tmpDir(t);
  // TSV: a quote inside an unquoted field is a plain character; a quoted field may hold a tab.
  const tsv = put(dir, 'sst.tsv', 'sentence\tlabel\nit\'s a "fine" film\t1\n"tab\there"\t0\n');
  const v1 = await importDataset(tsv, join(dir, 'tsv'), { task: 'classification', split: NOSPLIT });
  assert.deepEqual(loadSplit(join(dir, 'tsv'), 'train'), [
    { text: 'it\'s a "fine" film', label: '1' },
    { text: 'tab\there', label: '0' },
  ]);
  assert.deepEqual(v1.columns, { text: 'sentence', label: 'label' });
  assert.deepEqual(v1.labels, ['0', '1']);

  // JSONL: blank lines skipped, numbers kept as their text, extra keys ignored.
  const jsonl = put(
    dir,
    'rows.ndjson',
    '{"text":"the cat","label":1,"id":7}\n\n{"text":"a dog","label":0}\r\n{"text":"the mat","label":"1"}',
  );
  const v2 = await importDataset(jsonl, join(dir, 'jsonl'), { task: 'classification', split: NOSPLIT });
  assert.equal(v2.source.format, 'jsonl');
  assert.deepEqual(loadSplit(join(dir, 'jsonl'), 'train'), [
    { text: 'the cat', label: '1' },
    { text: 'a dog', label: '0' },
    { text: 'the mat', label: '1' },
  ]);
  assert.equal(v2.stats.skippedBlank, 1);

  const rows = [
    { text: 'the cat', label: 1 },
    { text: 'a dog', label: 0 },
    { text: 'the mat', label: '1' },
  ];
  const v3 = await importDataset(put(dir, 'a.json', JSON.stringify(rows, null, 2)), join(dir, 'json'), {
    task: 'classification',
    split: NOSPLIT,
  });
  const v4 = await importDataset(put(dir, 'b.json', JSON.stringify({ version: 2, data: rows })), join(dir, 'json2'), {
    task: 'classification',
    split: NOSPLIT,
  });
  assert.deepEqual(loadSplit(join(dir, 'json'), 'train'), loadSplit(join(dir, 'jsonl'), 'train'));
  assert.equal(v3.digest, v2.digest);
  assert.equal(v4.digest, v2.digest);
  assert.equal(v4.source.format, 'json');

  // `format` overrides the extension; an unknown extension says how to choose.
  const txt = put(dir, 'rows.txt', 'text,label\nthe cat,1\n');
  const v5 = await importDataset(txt, join(dir, 'txt'), { task: 'classification', format: 'csv', split: NOSPLIT });
  assert.equal(v5.rows.train, 1);
  const e = await failure(importDataset(txt, join(dir, 'txt2'), { task: 'classification' }));
  assert.equal(e.code, 'unknown-format');
  assert.match(e.message, /rows\.txt: cannot tell the format from the extension "\.txt".*format: 'csv'/);
});

test('the committed fixtures import', async (t) => {
  const dir = tmpDir(t);
  const v = await importDataset(join(FIX, 'pairs.csv'), join(dir, 'pairs'), {
    task: 'pair-classification',
    split: NOSPLIT,
  });
  assert.deepEqual(v.columns, { text: 'premise', text_pair: 'hypothesis', label: 'label' });
  assert.deepEqual(v.labels, ['contradiction', 'entailment', 'neutral']);
  assert.deepEqual(loadSplit(join(dir, 'pairs'), 'train')[0], {
    text: 'A man plays a guitar, loudly.',
    text_pair: 'A person makes "music".',
    label: 'entailment',
  });
  assert.equal(v.rows.train, 4);
});

test('column mapping: defaults by task, explicit names, and a missing column named with the columns present', async (t) => {
  const dir = tmpDir(t);
  const csv = put(dir, 'm.csv', 'id,review,stars\n1,the cat,5\n2,the dog,3\n');
  const v = await importDataset(csv, join(dir, 'm'), {
    task: 'classification',
    columns: { text: 'review', label: 'stars' },
    split: NOSPLIT,
  });
  assert.deepEqual(v.columns, { text: 'review', label: 'stars' });
  assert.deepEqual(loadSplit(join(dir, 'm'), 'train'), [
    { text: 'the cat', label: '5' },
    { text: 'the dog', label: '3' },
  ]);

  // Defaults match ignoring case.
  const upper = put(dir, 'u.csv', 'Text,Label\nthe cat,a\n');
  assert.deepEqual((await importDataset(upper, join(dir, 'u'), { task: 'classification', split: NOSPLIT })).columns, {
    text: 'Text',
    label: 'Label',
  });

  // A mapped column that is not there.
  let e = await failure(importDataset(csv, join(dir, 'x'), { task: 'classification', columns: { text: 'Review' } }));
  assert.equal(e.code, 'missing-column');
  assert.equal(e.file, csv);
  assert.equal(e.column, 'Review');
  assert.equal(
    e.message,
    `${csv}: column 'Review' (mapped to text) is not in the file (did you mean 'review'?); columns present: 'id', 'review', 'stars'`,
  );
  // No default column for a field.
  e = await failure(importDataset(csv, join(dir, 'x'), { task: 'classification' }));
  assert.equal(
    e.message,
    `${csv}: no column for text (looked for 'text', 'sentence'); columns present: 'id', 'review', 'stars'. Name it (the CLI: --text COLUMN; the app: the column mapping)`,
  );
  // A field the task does not have.
  e = await failure(importDataset(csv, join(dir, 'x'), { task: 'classification', columns: { prompt: 'review' } }));
  assert.equal(e.code, 'bad-options');
  assert.match(e.message, /columns\.prompt: the classification task has no prompt field \(it uses text, label\)/);
  assert.equal(existsSync(join(dir, 'x')), false);

  // JSON rows have no header: the keys of the first row stand for it.
  const noLabel = put(dir, 'nl.jsonl', '\n{"text":"a","stars":1}\n');
  e = await failure(importDataset(noLabel, join(dir, 'x'), { task: 'classification' }));
  assert.equal(
    e.message,
    `${noLabel}: no column for label (looked for 'label'); keys of the first row (line 2): 'text', 'stars'. Name it (the CLI: --label COLUMN; the app: the column mapping)`,
  );

  // Pair, causal-lm (both shapes), seq2seq, regression's `score`.
  const nli = put(dir, 'nli.jsonl', '{"sentence1":"a cat","sentence2":"an animal","label":"yes"}\n');
  const vp = await importDataset(nli, join(dir, 'nli'), { task: 'pair-classification', split: NOSPLIT });
  assert.deepEqual(vp.columns, { text: 'sentence1', text_pair: 'sentence2', label: 'label' });
  assert.deepEqual(loadSplit(join(dir, 'nli'), 'train'), [{ text: 'a cat', text_pair: 'an animal', label: 'yes' }]);
  const lm = put(dir, 'lm.jsonl', '{"prompt":"Q: 2+2?","completion":" 4","text":"unused"}\n');
  assert.deepEqual((await importDataset(lm, join(dir, 'lm'), { task: 'causal-lm', split: NOSPLIT })).columns, {
    prompt: 'prompt',
    completion: 'completion',
  });
  assert.deepEqual(loadSplit(join(dir, 'lm'), 'train'), [{ prompt: 'Q: 2+2?', completion: ' 4' }]);
  const lmText = put(dir, 'lm2.csv', 'text\nonce upon a time\n');
  assert.deepEqual((await importDataset(lmText, join(dir, 'lm2'), { task: 'causal-lm', split: NOSPLIT })).columns, {
    text: 'text',
  });
  const lm3 = await importDataset(lm, join(dir, 'lm3'), {
    task: 'causal-lm',
    columns: { text: 'text' },
    split: NOSPLIT,
  });
  assert.deepEqual(loadSplit(join(dir, 'lm3'), 'train'), [{ text: 'unused' }]);
  assert.deepEqual(lm3.columns, { text: 'text' });
  const s2s = put(dir, 's2s.csv', 'source,target\ntranslate: the cat,le chat\n');
  assert.deepEqual((await importDataset(s2s, join(dir, 's2s'), { task: 'seq2seq', split: NOSPLIT })).columns, {
    source: 'source',
    target: 'target',
  });
  assert.deepEqual(loadSplit(join(dir, 's2s'), 'train'), [{ source: 'translate: the cat', target: 'le chat' }]);
  const reg = put(dir, 'reg.csv', 'sentence,score\nthe cat,0.5\n');
  assert.deepEqual((await importDataset(reg, join(dir, 'reg'), { task: 'regression', split: NOSPLIT })).columns, {
    text: 'sentence',
    label: 'score',
  });
});

test('labels: the sorted train vocabulary; a label seen only in validation or test is an error naming file, line and label', async (t) => {
  const dir = tmpDir(t);
  const train = put(dir, 'train.csv', 'text,label\nthe cat,b\nthe dog,a\nthe mat,c\nit is,a\n');
  const val = put(dir, 'val.jsonl', '{"text":"a cat","label":"a"}\n{"text":"a dog","label":"c"}\n');
  const v = await importDataset(train, join(dir, 'ok'), { task: 'classification', files: { validation: val } });
  assert.deepEqual(v.labels, ['a', 'b', 'c']);
  assert.deepEqual(v.rows, { train: 4, validation: 2, test: 0 });
  assert.equal(v.split.validation, 0); // a split given as a file is not carved out of the input
  assert.deepEqual(v.source.formats, ['csv', 'jsonl']);
  assert.deepEqual(v.stats.labelCounts?.validation, { a: 1, c: 1 });
  assert.deepEqual(loadSplit(join(dir, 'ok'), 'validation'), [
    { text: 'a cat', label: 'a' },
    { text: 'a dog', label: 'c' },
  ]);

  const test2 = put(dir, 'test.csv', 'text,label\nthe cat,a\nodd one,zebra\n');
  const e = await failure(
    importDataset(train, join(dir, 'bad'), {
      task: 'classification',
      files: { test: test2 },
      split: { validation: 0, test: 0, seed: 0 },
    }),
  );
  assert.equal(e.code, 'unknown-label');
  assert.equal(e.file, test2);
  assert.equal(e.line, 3);
  assert.equal(
    e.message,
    `${test2}: line 3, column 'label': label 'zebra' is in the test split but never in train (train labels: 'a', 'b', 'c'); a model cannot learn it: add train rows with this label, fix the label, or remove the row`,
  );
  assert.equal(existsSync(join(dir, 'bad')), false);

  // A split file without the input's columns.
  const other = put(dir, 'other.csv', 'sentence,label\nthe cat,a\n');
  const e2 = await failure(
    importDataset(train, join(dir, 'bad'), { task: 'classification', files: { validation: other } }),
  );
  assert.equal(
    e2.message,
    `${other}: column 'text' (text, as in ${train}) is not in the file; columns present: 'sentence', 'label'`,
  );
});

test('regression: labels parse as finite numbers; anything else names file, line, column and value', async (t) => {
  const dir = tmpDir(t);
  const csv = put(dir, 'r.csv', 'text,label\nthe cat, 3 \nthe dog,-0.5\nthe mat,1e-3\nit is,+2.\n');
  const v = await importDataset(csv, join(dir, 'r'), { task: 'regression', split: NOSPLIT });
  assert.deepEqual(
    loadSplit(join(dir, 'r'), 'train').map((r) => r.label),
    [3, -0.5, 0.001, 2],
  );
  assert.equal(v.labels, undefined);
  assert.equal(v.stats.labelRange?.min, -0.5);
  assert.equal(v.stats.labelRange?.max, 3);
  assert.equal(v.stats.labelRange?.mean, (3 - 0.5 + 0.001 + 2) / 4);
  // JSON numbers and their text give the same rows, so the same digest.
  const json = put(
    dir,
    'r.jsonl',
    '{"text":"the cat","label":3}\n{"text":"the dog","label":"-0.5"}\n{"text":"the mat","label":0.001}\n{"text":"it is","label":2}\n',
  );
  assert.equal((await importDataset(json, join(dir, 'r2'), { task: 'regression', split: NOSPLIT })).digest, v.digest);

  for (const [value, shown] of [
    ['abc', '"abc"'],
    ['inf', '"inf"'],
    ['NaN', '"NaN"'],
    ['0x10', '"0x10"'],
    ['"1,5"', '"1,5"'],
  ] as const) {
    const bad = put(dir, 'bad.csv', `text,score\nthe cat,1\nthe dog,${value}\n`);
    const e = await failure(importDataset(bad, join(dir, 'bad'), { task: 'regression' }));
    assert.equal(e.code, 'bad-number');
    assert.equal(e.line, 3);
    assert.equal(e.column, 'score');
    assert.equal(
      e.message,
      `${bad}: line 3, column 'score': ${shown} is not a finite number (regression labels must be numbers such as 3, -0.5 or 1e-3)`,
    );
  }
  const empty = put(dir, 'empty.csv', 'text,score\nthe cat,\n');
  const e = await failure(importDataset(empty, join(dir, 'bad'), { task: 'regression' }));
  assert.equal(e.message, `${empty}: line 2, column 'score': empty value (a regression label must be a finite number)`);
  const jbad = put(dir, 'bad.json', '[{"text":"a","label":1},{"text":"b","label":true}]');
  const e2 = await failure(importDataset(jbad, join(dir, 'bad'), { task: 'regression' }));
  assert.equal(e2.item, 2);
  assert.equal(
    e2.message,
    `${jbad}: item 2, column 'label': true is not a finite number (regression labels must be numbers such as 3, -0.5 or 1e-3)`,
  );
});

test('malformed CSV/TSV: ragged rows, missing and empty values, empty file, header only, unclosed quote', async (t) => {
  const dir = tmpDir(t);
  const cases: [string, string, ImportOptions, string, string, number | undefined][] = [
    // name, content, options, code, message tail, line
    [
      'ragged.csv',
      'text,label\n"a\nb",pos\nc,pos,extra\n',
      { task: 'classification' },
      'ragged-row',
      `line 4: 3 columns but the header has 2 ('text', 'label'). A field that contains a comma, a quote or a line break must be quoted ("…", with "" for a quote inside)`,
      4,
    ],
    [
      'short.tsv',
      'text\tlabel\nfine\tpos\nno label here\n',
      { task: 'classification' },
      'ragged-row',
      `line 3: 1 column but the header has 2 ('text', 'label'). A field that contains a tab, a quote or a line break must be quoted ("…", with "" for a quote inside)`,
      3,
    ],
    [
      'emptytext.csv',
      'text,label\nfine,pos\n,neg\n',
      { task: 'classification' },
      'empty-value',
      `line 3, column 'text': empty value (the text is required)`,
      3,
    ],
    [
      'blanktext.csv',
      'text,label\n"   ",neg\n',
      { task: 'classification' },
      'empty-value',
      `line 2, column 'text': empty value (the text is required)`,
      2,
    ],
    [
      'emptylabel.csv',
      'text,label\nfine,\n',
      { task: 'classification' },
      'empty-value',
      `line 2, column 'label': empty value (every row needs a label)`,
      2,
    ],
    [
      'emptypair.csv',
      'premise,hypothesis,label\na cat,an animal,yes\na dog,,no\n',
      { task: 'pair-classification' },
      'empty-value',
      `line 3, column 'hypothesis': empty value (a pair task needs both texts)`,
      3,
    ],
    ['empty.csv', '', { task: 'classification' }, 'empty-file', 'the file is empty (no header, no rows)', undefined],
    [
      'blank.csv',
      '\uFEFF\n\n',
      { task: 'classification' },
      'empty-file',
      'the file is empty (no header, no rows)',
      undefined,
    ],
    [
      'header.csv',
      'text,label\r\n',
      { task: 'classification' },
      'header-only',
      `the file has a header ('text', 'label') but no rows`,
      undefined,
    ],
    [
      'unclosed.csv',
      'text,label\nfine,pos\n"never closed,neg\nmore,pos\n',
      { task: 'classification' },
      'csv-syntax',
      'line 3: a quoted field opens here and is never closed (the file ends inside it); a quote inside a field is written ""',
      3,
    ],
    [
      'dup.csv',
      'text,text\na,b\n',
      { task: 'classification' },
      'bad-header',
      `line 1: the header names column 'text' twice (header: 'text', 'text')`,
      1,
    ],
  ];
  for (const [name, content, opts, code, tail, line] of cases) {
    const file = put(dir, name, content);
    const e = await failure(importDataset(file, join(dir, 'out'), opts));
    assert.equal(e.code, code, name);
    assert.equal(e.message, `${file}: ${tail}`, name);
    assert.equal(e.file, file, name);
    assert.equal(e.line, line, name);
    assert.equal(existsSync(join(dir, 'out')), false, name);
  }
  assert.deepEqual(
    leftovers(
      dir,
      cases.map((c) => c[0]),
    ),
    [],
  );
});

test('malformed JSONL/JSON: invalid JSON with its line, non-objects, missing keys, no rows', async (t) => {
  const dir = tmpDir(t);
  const cases: [string, string, string, string, number | undefined][] = [
    ['bad.jsonl', '{"text":"a","label":"x"}\n\n{"text":"b", "label":}\n', 'invalid-json', 'line 3: invalid JSON: ', 3],
    [
      'arr.jsonl',
      '{"text":"a","label":"x"}\n["b","y"]\n',
      'bad-row',
      'line 2: expected a JSON object such as {"text": "…", "label": "…"}, got an array',
      2,
    ],
    [
      'miss.jsonl',
      '{"text":"a","label":"x"}\n{"text":"b"}\n',
      'missing-value',
      `line 2, column 'label': missing value (every row needs a label)`,
      2,
    ],
    [
      'null.jsonl',
      '{"text":"a","label":"x"}\n{"text":null,"label":"y"}\n',
      'missing-value',
      `line 2, column 'text': missing value (every row needs a text)`,
      2,
    ],
    [
      'obj.jsonl',
      '{"text":{"a":1},"label":"x"}\n',
      'bad-row',
      `line 1, column 'text': expected a string, got an object`,
      1,
    ],
    ['empty.jsonl', '\n  \n', 'empty-file', 'the file is empty (no JSON lines)', undefined],
    ['empty.json', '[]', 'empty-file', 'the JSON array is empty (no rows)', undefined],
    [
      'scalar.json',
      '{"rows": []}',
      'invalid-json',
      `expected an array of objects or {"data": [ … ]}, got an object with keys 'rows'`,
      undefined,
    ],
    [
      'broken.json',
      '[\n  {"text": "a", "label": "x"},\n  {"text": "b" "label": "y"}\n]',
      'invalid-json',
      'line 3, column 16: invalid JSON: ',
      3,
    ],
  ];
  for (const [name, content, code, head, line] of cases) {
    const file = put(dir, name, content);
    const e = await failure(importDataset(file, join(dir, 'out'), { task: 'classification' }));
    assert.equal(e.code, code, name);
    assert.ok(e.message.startsWith(`${file}: ${head}`), `${name}: ${e.message}`);
    assert.equal(e.line, line, name);
  }
});

test('encodings: invalid UTF-8 names byte and line and suggests latin1; latin1 and UTF-16 LE import; chunk boundaries', async (t) => {
  const dir = tmpDir(t);
  const bytes = Buffer.concat([Buffer.from('text,label\nok,pos\ncaf'), Buffer.from([0xe9]), Buffer.from(',neg\n')]);
  const file = put(dir, 'latin.csv', bytes);
  const e = await failure(importDataset(file, join(dir, 'out'), { task: 'classification' }));
  assert.equal(e.code, 'bad-encoding');
  assert.equal(e.line, 3);
  assert.equal(
    e.message,
    `${file}: not valid UTF-8 at byte 21 (line 3): byte 0xE9. If the file is Latin-1 / ISO-8859-1 (or another single-byte encoding), import it with encoding: 'latin1'; if it is UTF-16, with encoding: 'utf-16le'`,
  );
  assert.equal(existsSync(join(dir, 'out')), false);
  const v = await importDataset(file, join(dir, 'out'), { task: 'classification', encoding: 'latin1', split: NOSPLIT });
  assert.deepEqual(loadSplit(join(dir, 'out'), 'train'), [
    { text: 'ok', label: 'pos' },
    { text: 'café', label: 'neg' },
  ]);
  assert.equal(v.source.encoding, 'latin1');
  // The same rows in UTF-8 and UTF-16 LE (with its BOM, detected; and named) give the same digest.
  const utf8 = put(dir, 'utf8.csv', 'text,label\nok,pos\ncafé,neg\n');
  const d8 = (await importDataset(utf8, join(dir, 'u8'), { task: 'classification', split: NOSPLIT })).digest;
  assert.equal(d8, v.digest);
  const u16 = put(
    dir,
    'u16.csv',
    Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('text,label\nok,pos\ncafé,neg\n', 'utf16le')]),
  );
  const v16 = await importDataset(u16, join(dir, 'u16'), { task: 'classification', split: NOSPLIT });
  assert.equal(v16.digest, d8);
  assert.equal(v16.source.encoding, 'utf-16le');
  assert.equal(
    (await importDataset(u16, join(dir, 'u16b'), { task: 'classification', encoding: 'utf-16le', split: NOSPLIT }))
      .digest,
    d8,
  );

  // Multi-byte characters cut by the 64 KiB read chunks: '€' (3 bytes) and '😀' (4 bytes) straddle the boundary.
  for (const [ch, before] of [
    ['€', 1],
    ['😀', 2],
    ['😀', 1],
    ['😀', 3],
  ] as const) {
    const head = 'text,label\n';
    const pad = 'x'.repeat(65536 - before - head.length);
    const body = `${head}${pad}${ch}y,pos\n`;
    assert.equal(Buffer.byteLength(`${head}${pad}`) + before, 65536);
    const f = put(dir, 'boundary.csv', body);
    await importDataset(f, join(dir, 'b'), { task: 'classification', split: NOSPLIT });
    assert.equal(loadSplit(join(dir, 'b'), 'train')[0].text, `${pad}${ch}y`);
    rmSync(join(dir, 'b'), { recursive: true });
  }
  // A bad byte right after the boundary, and a sequence cut by the end of the file.
  const big = Buffer.concat([
    Buffer.from(`text,label\n${'x'.repeat(65536 - 11)}\n`),
    Buffer.from([0x80]),
    Buffer.from(',pos\n'),
  ]);
  const e2 = await failure(importDataset(put(dir, 'big.csv', big), join(dir, 'o'), { task: 'classification' }));
  assert.match(e2.message, /not valid UTF-8 at byte 65537 \(line 3\): byte 0x80\./);
  const cut = Buffer.concat([Buffer.from('text,label\nok,pos\nend'), Buffer.from([0xe2, 0x82])]);
  const e3 = await failure(importDataset(put(dir, 'cut.csv', cut), join(dir, 'o'), { task: 'classification' }));
  assert.match(e3.message, /not valid UTF-8 at byte 21 \(line 3\): a character cut off by the end of the file\./);
  // The locator agrees with the decoder on overlong forms and surrogates.
  assert.equal(firstInvalidUtf8(Uint8Array.from([0x61, 0xc0, 0x80]), true), 1);
  assert.equal(firstInvalidUtf8(Uint8Array.from([0x61, 0xed, 0xa0, 0x80]), true), 1);
  assert.equal(firstInvalidUtf8(Uint8Array.from([0xe2, 0x82]), false), -1);
});

test('a file over maxBytes is refused with its size and the limit', async (t) => {
  const dir = tmpDir(t);
  const file = put(dir, 'big.jsonl', '{"text":"the cat","label":"a"}\n'.repeat(10));
  const e = await failure(importDataset(file, join(dir, 'out'), { task: 'classification', maxBytes: 100 }));
  assert.equal(e.code, 'too-large');
  assert.equal(e.message, `${file}: 310 bytes is over the limit of 100 bytes (maxBytes); raise maxBytes to import it`);
  const json = put(
    dir,
    'big.json',
    JSON.stringify(Array.from({ length: 40_000 }, (_, i) => ({ text: `row ${i}`, label: 'a' }))),
  );
  const e2 = await failure(importDataset(json, join(dir, 'out'), { task: 'classification', maxBytes: 1024 * 1024 }));
  assert.match(
    e2.message,
    /big\.json: 1\d{6} bytes \(1\.\d MiB\) is over the limit of 1048576 bytes \(1\.0 MiB\) \(maxBytes\)/,
  );
  assert.equal(existsSync(join(dir, 'out')), false);
  const gone = join(dir, 'nope.csv');
  const e3 = await failure(importDataset(gone, join(dir, 'out'), { task: 'classification' }));
  assert.equal(e3.code, 'not-found');
  assert.equal(e3.message, `${gone}: input file not found`);
});

function rowsCsv(n: number, from = 0): string {
  let s = 'text,label\n';
  for (let i = from; i < from + n; i++) s += `"example number ${i}, with a comma",${['a', 'b', 'c'][i % 3]}\n`;
  return s;
}

test('splits: deterministic by seed, different for another seed, fractions within ±3%, stable when rows are added', async (t) => {
  const dir = tmpDir(t);
  const file = put(dir, 'rows.csv', rowsCsv(2000));
  const split = { validation: 0.2, test: 0.1, seed: 7 };
  const a = await importDataset(file, join(dir, 'a'), { task: 'classification', split });
  const b = await importDataset(file, join(dir, 'b'), { task: 'classification', split });
  assert.equal(a.digest, b.digest);
  for (const s of ['train', 'validation', 'test'] as const)
    assert.equal(
      readFileSync(join(dir, 'a', `${s}.jsonl`), 'utf8'),
      readFileSync(join(dir, 'b', `${s}.jsonl`), 'utf8'),
    );
  assert.equal(a.rows.train + a.rows.validation + a.rows.test, 2000);
  assert.ok(Math.abs(a.rows.validation / 2000 - 0.2) <= 0.03, `validation ${a.rows.validation}`);
  assert.ok(Math.abs(a.rows.test / 2000 - 0.1) <= 0.03, `test ${a.rows.test}`);
  assert.deepEqual(a.split, { validation: 0.2, test: 0.1, seed: 7, files: {} });

  const c = await importDataset(file, join(dir, 'c'), { task: 'classification', split: { ...split, seed: 8 } });
  assert.notEqual(c.digest, a.digest);
  const texts = (d: string, s: 'validation' | 'test'): Set<string> =>
    new Set(loadSplit(join(dir, d), s).map((r) => r.text as string));
  const va = texts('a', 'validation');
  const vc = texts('c', 'validation');
  const common = [...va].filter((x) => vc.has(x)).length;
  assert.ok(common < va.size * 0.4, `seeds 7 and 8 share ${common} of ${va.size} validation rows`);

  // 300 more rows: none of the first 2000 moves.
  const more = put(dir, 'more.csv', rowsCsv(2300));
  await importDataset(more, join(dir, 'd'), { task: 'classification', split });
  const where = (d: string): Map<string, string> => {
    const m = new Map<string, string>();
    for (const s of ['train', 'validation', 'test'] as const)
      for (const r of loadSplit(join(dir, d), s)) m.set(r.text as string, s);
    return m;
  };
  const wa = where('a');
  const wd = where('d');
  assert.equal(wd.size, 2300);
  for (const [text, s] of wa) assert.equal(wd.get(text), s, text);

  // Defaults: validation 0.1, test 0, seed 0; equal rows share a split and count as duplicates.
  const dup = put(dir, 'dup.csv', `${rowsCsv(1000)}${rowsCsv(10).slice('text,label\n'.length)}`);
  const v = await importDataset(dup, join(dir, 'e'), { task: 'classification' });
  assert.deepEqual(v.split, { validation: 0.1, test: 0, seed: 0, files: {} });
  assert.equal(v.rows.test, 0);
  assert.ok(Math.abs(v.rows.validation / 1010 - 0.1) <= 0.03);
  assert.equal(v.stats.duplicates, 10);
  assert.equal(v.rows.train + v.rows.validation, 1010);

  const e = await failure(
    importDataset(file, join(dir, 'x'), { task: 'classification', split: { validation: 0.6, test: 0.5, seed: 0 } }),
  );
  assert.equal(
    e.message,
    'split.validation + split.test must be under 1 (got 0.6 + 0.5): nothing would be left to train on',
  );
});

test('a few rows: a validation fraction that caught no row still gets one distinct row (and its copies)', async (t) => {
  const dir = tmpDir(t);
  const at = (row: Example): number => splitPoint(0, createHash('sha256').update(JSON.stringify(row)).digest());
  // Five rows, each label twice or more: by the hash alone none of them goes to validation at 0.1 with seed 0.
  const rows = [
    { text: 'good film', label: 'pos' },
    { text: 'great plot', label: 'pos' },
    { text: 'loved it', label: 'pos' },
    { text: 'bad film', label: 'neg' },
    { text: 'dull plot', label: 'neg' },
  ];
  assert.ok(
    rows.every((r) => at(r) >= 0.1),
    'the hash alone puts every row in train',
  );
  const csv = (rs: Example[]): string => `text,label\n${rs.map((r) => `${r.text},${r.label}`).join('\n')}\n`;
  const v = await importDataset(put(dir, 'few.csv', csv(rows)), join(dir, 'few'), { task: 'classification' });
  assert.deepEqual(v.rows, { train: 4, validation: 1, test: 0 });
  // The row nearest to the validation band moves; every label keeps a train row.
  const nearest = rows.reduce((a, b) => (at(b) < at(a) ? b : a));
  assert.deepEqual(loadSplit(join(dir, 'few'), 'validation'), [nearest]);
  assert.deepEqual(v.labels, ['neg', 'pos']);
  assert.equal(missingValidation(v), null);
  // Deterministic: the same file and seed give the same version.
  const again = await importDataset(put(dir, 'few2.csv', csv(rows)), join(dir, 'few2'), { task: 'classification' });
  assert.equal(again.digest, v.digest);

  // Copies move together: three copies of two texts give 3 + 3, never a copy on each side.
  const copies = put(
    dir,
    'copies.jsonl',
    ['a b c', 'd e f', 'a b c', 'd e f', 'a b c', 'd e f'].map((x) => JSON.stringify({ text: x })).join('\n'),
  );
  const c = await importDataset(copies, join(dir, 'copies'), { task: 'causal-lm' });
  assert.deepEqual(c.rows, { train: 3, validation: 3, test: 0 });
  assert.equal(new Set(loadSplit(join(dir, 'copies'), 'validation').map((r) => r.text)).size, 1);

  // Nothing can move without emptying train, or a label from train: the version says why a run would have no metrics.
  const one = await importDataset(put(dir, 'one.csv', csv([rows[0], rows[0], rows[0]])), join(dir, 'one'), {
    task: 'classification',
  });
  assert.deepEqual(one.rows, { train: 3, validation: 0, test: 0 });
  assert.match(
    missingValidation(one) ?? '',
    /^the dataset version [0-9a-f]{12} has no validation rows \(a validation fraction of 0.1 was asked for, but its 3 rows \(1 distinct\) all stayed in train: the split keeps copies of a row together, and train keeps a row of every label\), so a run on it would end with no metrics; import it again with a validation file or more distinct rows, or with a validation fraction of 0 to train without evaluation$/,
  );
  const eachOnce = await importDataset(put(dir, 'once.csv', csv([rows[0], rows[3]])), join(dir, 'once'), {
    task: 'classification',
  });
  assert.deepEqual(eachOnce.rows, { train: 2, validation: 0, test: 0 });
  assert.notEqual(missingValidation(eachOnce), null);
  // Asked for none: none, and nothing to say.
  const none = await importDataset(put(dir, 'none.csv', csv(rows)), join(dir, 'none'), {
    task: 'classification',
    split: NOSPLIT,
  });
  assert.deepEqual(none.rows, { train: 5, validation: 0, test: 0 });
  assert.equal(missingValidation(none), null);
});

test('digest: the normalised rows, not the bytes; one label changes it', async (t) => {
  const dir = tmpDir(t);
  const rows = [
    { text: 'the cat, sat', label: 'pos' },
    { text: 'a "dog"\nran', label: 'neg' },
    { text: 'the mat', label: 'pos' },
  ];
  const csv = put(dir, 'a.csv', 'text,label\n"the cat, sat",pos\n"a ""dog""\nran",neg\nthe mat,pos\n');
  const csvAllQuoted = put(
    dir,
    'b.csv',
    '\uFEFF"text","label"\r\n"the cat, sat","pos"\r\n"a ""dog""\nran","neg"\r\n"the mat","pos"',
  );
  const jsonl = put(dir, 'c.jsonl', rows.map((r) => JSON.stringify(r)).join('\n'));
  const json = put(dir, 'd.json', JSON.stringify({ data: rows.map((r) => ({ label: r.label, text: r.text })) }));
  const digests = [];
  for (const [i, f] of [csv, csvAllQuoted, jsonl, json].entries())
    digests.push((await importDataset(f, join(dir, `o${i}`), { task: 'classification', split: NOSPLIT })).digest);
  assert.deepEqual(new Set(digests).size, 1);
  // Pinned (recomputed independently: sha256 of "delta-studio dataset v1\ntask classification\n" + "train\t<row JSON>\n" per row):
  // the normalised form is the version; changing it changes every dataset's version.
  assert.equal(digests[0], 'd6ce18df346d4c57b90bc81a8bd01b5e4751320c8cfcb16a78845497128b4ce6');
  const changed = put(
    dir,
    'e.jsonl',
    rows.map((r, i) => JSON.stringify(i === 2 ? { ...r, label: 'neg' } : r)).join('\n'),
  );
  assert.notEqual(
    (await importDataset(changed, join(dir, 'o5'), { task: 'classification', split: NOSPLIT })).digest,
    digests[0],
  );
  // The task is part of the version.
  assert.notEqual(
    (await importDataset(jsonl, join(dir, 'o6'), { task: 'causal-lm', split: NOSPLIT })).digest,
    digests[0],
  );
});

test('atomicity: a failed import leaves destDir absent, or as it was', async (t) => {
  const dir = tmpDir(t);
  const bad = put(dir, 'bad.csv', `${rowsCsv(3000)}one,two,three\n`);
  const e = await failure(importDataset(bad, join(dir, 'ds'), { task: 'classification' }));
  assert.equal(e.code, 'ragged-row');
  assert.equal(e.line, 3002);
  assert.equal(existsSync(join(dir, 'ds')), false);
  assert.deepEqual(leftovers(dir, ['bad.csv']), []);

  const good = put(dir, 'good.csv', rowsCsv(50));
  const v = await importDataset(good, join(dir, 'ds'), { task: 'classification' });
  const snapshot = (): Record<string, string> =>
    Object.fromEntries(readdirSync(join(dir, 'ds')).map((n) => [n, readFileSync(join(dir, 'ds', n), 'utf8')]));
  const before = snapshot();
  await failure(importDataset(bad, join(dir, 'ds'), { task: 'classification' }));
  await failure(
    importDataset(put(dir, 'nolabel.csv', 'text,label\na,b\nc,\n'), join(dir, 'ds'), { task: 'classification' }),
  );
  assert.deepEqual(snapshot(), before);
  assert.deepEqual(leftovers(dir, ['bad.csv', 'good.csv', 'nolabel.csv', 'ds']), []);
  assert.equal(readDatasetVersion(join(dir, 'ds')).digest, v.digest);

  // A folder that is not an earlier import is never replaced.
  const mine = join(dir, 'mine');
  mkdirSync(mine);
  writeFileSync(join(mine, 'notes.txt'), 'keep me');
  const e2 = await failure(importDataset(good, mine, { task: 'classification' }));
  assert.equal(
    e2.message,
    `${mine}: the folder is not empty and holds no dataset.json (it is not an earlier import): choose a new or empty folder, so nothing of yours is replaced`,
  );
  assert.deepEqual(readdirSync(mine), ['notes.txt']);
  rmSync(mine, { recursive: true });
  // The temp folder of an import whose process died is cleaned up by the next import.
  const deadPid = spawnSync(process.execPath, ['-e', '0']).pid as number;
  mkdirSync(join(dir, `.ds.importing-${deadPid}-00ff00ff`));
  writeFileSync(join(dir, `.ds.importing-${deadPid}-00ff00ff`, 'train.jsonl'), '{"text":"half');

  // A successful import replaces the folder whole.
  const v2 = await importDataset(put(dir, 'other.csv', rowsCsv(20)), join(dir, 'ds'), { task: 'classification' });
  assert.equal(readDatasetVersion(join(dir, 'ds')).digest, v2.digest);
  assert.equal(v2.rows.train + v2.rows.validation, 20);
  assert.deepEqual(leftovers(dir, ['bad.csv', 'good.csv', 'nolabel.csv', 'other.csv', 'ds']), []);
});

test('a ~50 MB CSV is streamed: RSS grows by less than 150 MB', async (t) => {
  const dir = tmpDir(t);
  const file = join(dir, 'big.csv');
  const fd = openSync(file, 'w');
  const filler = 'lorem ipsum dolor sit amet, "consectetur" adipiscing elit'.replace(/"/g, '""');
  let n = 0;
  let size = 0;
  writeSync(fd, 'id,text,label\n');
  while (size < 50 * 1024 * 1024) {
    let chunk = '';
    for (let k = 0; k < 1000; k++, n++)
      chunk += `${n},"row ${n}: ${filler}\nsecond line",${n % 7 === 0 ? 'rare' : n % 2 ? 'odd' : 'even'}\n`;
    size += writeSync(fd, chunk);
  }
  closeSync(fd);
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  let v;
  try {
    v = await importDataset(file, join(dir, 'ds'), {
      task: 'classification',
      split: { validation: 0.05, test: 0.05, seed: 1 },
    });
  } finally {
    clearInterval(timer);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  assert.ok(size >= 50 * 1024 * 1024);
  assert.equal(v.rows.train + v.rows.validation + v.rows.test, n);
  assert.deepEqual(v.labels, ['even', 'odd', 'rare']);
  assert.equal(v.source.bytes[0], size + 'id,text,label\n'.length);
  assert.ok(peak - base < 150 * 1024 * 1024, `RSS grew by ${((peak - base) / 2 ** 20).toFixed(0)} MB`);
  const first = loadSplit(join(dir, 'ds'), 'train')[0];
  assert.match(
    first.text as string,
    /^row \d+: lorem ipsum dolor sit amet, "consectetur" adipiscing elit\nsecond line$/,
  );
});

test('token length statistics over train', async (t) => {
  const dir = tmpDir(t);
  const texts = [
    'the cat',
    'the cat sat',
    'the cat sat on the mat',
    'hello world !',
    'a dog is playing .',
    'the dog ran on the mat , it is a cat .',
  ];
  const file = put(dir, 't.jsonl', texts.map((text, i) => JSON.stringify({ text, label: i % 2 })).join('\n'));
  await importDataset(file, join(dir, 'ds'), { task: 'classification', split: NOSPLIT });
  const wp = TextTokenizer.fromFolder(join(TOK, 'wordpiece'));
  // Lengths with [CLS] … [SEP]: 4, 5, 8, 5, 8 (play ##ing), 14.
  assert.deepEqual(tokenLengthStats(join(dir, 'ds'), wp), {
    count: 6,
    mean: 44 / 6,
    p50: 5,
    p95: 14,
    max: 14,
    histogram: [
      { bucketUpper: 8, count: 5 },
      { bucketUpper: 16, count: 1 },
    ],
  });
  // Only train counts.
  const v = await importDataset(file, join(dir, 'ds2'), {
    task: 'classification',
    files: { validation: put(dir, 'v.jsonl', '{"text":"the cat sat on the mat , it is a cat .","label":1}') },
  });
  assert.equal(v.rows.validation, 1);
  assert.equal(tokenLengthStats(join(dir, 'ds2'), wp).count, v.rows.train);
  // The BERT fixture's tokenizer, and seq2seq's target lengths.
  const bert = TextTokenizer.fromFolder(join(here, 'fixtures', 'models', 'bert'));
  assert.equal(tokenLengthStats(join(dir, 'ds'), bert).count, 6);
  await importDataset(put(dir, 's.csv', 'source,target\nthe cat,the mat sat\nhello,world\n'), join(dir, 's2s'), {
    task: 'seq2seq',
    split: NOSPLIT,
  });
  const s = tokenLengthStats(join(dir, 's2s'), wp);
  assert.equal(s.max, 4);
  assert.equal(s.mean, 3.5);
  assert.deepEqual(s.target, { count: 2, mean: 4, p50: 3, p95: 5, max: 5, histogram: [{ bucketUpper: 8, count: 2 }] });
});

test('tokenization cache: keyed by digest, tokenizer and maxLength; the second call does not tokenize', async (t) => {
  const dir = tmpDir(t);
  const texts = [
    'the cat',
    'the cat sat',
    'the cat sat on the mat',
    'hello world !',
    'a dog is playing .',
    'the dog ran on the mat , it is a cat .',
  ];
  const file = put(
    dir,
    't.jsonl',
    texts.map((text, i) => JSON.stringify({ text, label: i % 3 === 0 ? 'x' : 'y' })).join('\n'),
  );
  const ds = join(dir, 'ds');
  const v = await importDataset(file, ds, { task: 'classification', split: NOSPLIT });
  const wp = TextTokenizer.fromFolder(join(TOK, 'wordpiece'));
  let calls = 0;
  const counting: DataTokenizer = {
    source: wp.source,
    eosId: wp.eosId,
    encode: (...args) => {
      calls++;
      return wp.encode(...args);
    },
  };

  const first = tokenizeCached(ds, counting, 6);
  assert.equal(first.fromCache, false);
  assert.equal(calls, 6);
  const tr = first.splits.train;
  assert.equal(tr.count, 6);
  assert.deepEqual([...tr.offsets], [0, 4, 9, 15, 20, 26, 32]);
  assert.deepEqual([...tr.ids.subarray(0, 9)], [2, 5, 6, 3, 2, 5, 6, 7, 3]);
  assert.deepEqual([...tr.ids.subarray(26)], [2, 5, 11, 12, 8, 3]); // truncated to 6
  assert.equal(tr.truncated, 3);
  assert.deepEqual([...(tr.labels as Int32Array)], [0, 1, 1, 0, 1, 1]); // labels ['x', 'y']
  assert.equal(first.splits.validation.count, 0);
  assert.equal(first.dir, join(ds, 'cache', first.key));
  assert.deepEqual(readdirSync(join(ds, 'cache')), [first.key]);
  const meta = JSON.parse(readFileSync(join(first.dir, 'meta.json'), 'utf8'));
  assert.equal(meta.digest, v.digest);
  assert.equal(meta.maxLength, 6);
  assert.equal(
    meta.tokenizerSha256,
    (await import('node:crypto')).createHash('sha256').update(readFileSync(wp.source)).digest('hex'),
  );

  const second = tokenizeCached(ds, counting, 6);
  assert.equal(second.fromCache, true);
  assert.equal(calls, 6);
  assert.equal(second.key, first.key);
  assert.deepEqual(second.splits, first.splits);

  // Another maxLength is another entry; re-importing the same data keeps the cache.
  const longer = tokenizeCached(ds, counting, 32);
  assert.notEqual(longer.key, first.key);
  assert.equal(calls, 12);
  assert.equal(longer.splits.train.truncated, 0);
  await importDataset(file, ds, { task: 'classification', split: NOSPLIT });
  assert.equal(tokenizeCached(ds, counting, 6).fromCache, true);
  assert.equal(calls, 12);
  // Different data: a new digest, so a new key.
  await importDataset(put(dir, 't2.jsonl', '{"text":"the mat","label":"x"}'), ds, {
    task: 'classification',
    split: NOSPLIT,
  });
  const other = tokenizeCached(ds, counting, 6);
  assert.equal(other.fromCache, false);
  assert.notEqual(other.key, first.key);
  assert.deepEqual([...other.splits.train.ids], [2, 5, 9, 3]);
  // A damaged cache is rebuilt, not trusted.
  writeFileSync(join(other.dir, 'train.ids.bin'), Buffer.alloc(3));
  const rebuilt = tokenizeCached(ds, counting, 6);
  assert.equal(rebuilt.fromCache, false);
  assert.deepEqual([...rebuilt.splits.train.ids], [2, 5, 9, 3]);
  assert.deepEqual(readdirSync(join(ds, 'cache')), [other.key]);
});

test('tokenization by task: pairs carry type ids, causal LM marks the prompt, seq2seq keeps targets', async (t) => {
  const dir = tmpDir(t);
  const wp = TextTokenizer.fromFolder(join(TOK, 'wordpiece'));
  await importDataset(put(dir, 'p.csv', 'premise,hypothesis,label\nthe cat,a dog,yes\n'), join(dir, 'p'), {
    task: 'pair-classification',
    split: NOSPLIT,
  });
  const p = tokenizeCached(join(dir, 'p'), wp, 16).splits.train;
  assert.deepEqual([...p.ids], [2, 5, 6, 3, 10, 11, 3]);
  assert.deepEqual([...(p.typeIds as Uint8Array)], [0, 0, 0, 0, 1, 1, 1]);

  const gpt2 = TextTokenizer.fromFolder(join(TOK, 'gpt2'));
  await importDataset(put(dir, 'lm.jsonl', '{"prompt":"the","completion":" cat"}\n'), join(dir, 'lm'), {
    task: 'causal-lm',
    split: NOSPLIT,
  });
  const lm = tokenizeCached(join(dir, 'lm'), gpt2, 16).splits.train;
  assert.deepEqual([...lm.ids], [83, 257, 261, 269]);
  assert.deepEqual([...(lm.promptLengths as Uint32Array)], [2]);
  const cut = tokenizeCached(join(dir, 'lm'), gpt2, 3).splits.train;
  assert.deepEqual([...cut.ids], [83, 257, 261]);
  assert.equal(cut.truncated, 1);

  await importDataset(put(dir, 's.csv', 'source,target\nthe cat,the mat sat\n'), join(dir, 's'), {
    task: 'seq2seq',
    split: NOSPLIT,
  });
  const s = tokenizeCached(join(dir, 's'), wp, 16).splits.train;
  assert.deepEqual([...s.ids], [2, 5, 6, 3]);
  assert.deepEqual([...(s.targetIds as Int32Array)], [2, 5, 9, 7, 3]);
  assert.deepEqual([...(s.targetOffsets as Uint32Array)], [0, 5]);

  await importDataset(put(dir, 'r.csv', 'text,label\nthe cat,0.25\n'), join(dir, 'r'), {
    task: 'regression',
    split: NOSPLIT,
  });
  assert.deepEqual([...(tokenizeCached(join(dir, 'r'), wp, 16).splits.train.labels as Float64Array)], [0.25]);
});

test('a CSV/TSV without a header line: its columns are named, and its first line is a row; unnamed, the error says how', async (t) => {
  const dir = tmpDir(t);
  const tsv = put(dir, 'plain.tsv', 'a fine film\tpos\na dull one\tneg\n');
  const v = await importDataset(tsv, join(dir, 'named'), {
    task: 'classification',
    split: NOSPLIT,
    headerless: ['text', 'label'],
  });
  assert.deepEqual(loadSplit(join(dir, 'named'), 'train'), [
    { text: 'a fine film', label: 'pos' },
    { text: 'a dull one', label: 'neg' },
  ]);
  assert.deepEqual(v.labels, ['neg', 'pos']);
  const e = await failure(importDataset(tsv, join(dir, 'unnamed'), { task: 'classification', split: NOSPLIT }));
  assert.match(e.message, /no column for text/);
  assert.match(e.message, /--text COLUMN/);
  assert.match(e.message, /--columns text,label/);
  assert.doesNotMatch(e.message, /columns: \{/, 'the API spelling is not what a user types');
  const ragged = put(dir, 'ragged.tsv', 'one\ttwo\tthree\n');
  const r = await failure(
    importDataset(ragged, join(dir, 'r'), { task: 'classification', split: NOSPLIT, headerless: ['text', 'label'] }),
  );
  assert.match(r.message, /line 1: 3 columns but the columns given for the file have 2 \('text', 'label'\)/);
  const twice = await failure(
    importDataset(tsv, join(dir, 't'), { task: 'classification', split: NOSPLIT, headerless: ['text', 'text'] }),
  );
  assert.match(twice.message, /column "text" is named twice/);
});
