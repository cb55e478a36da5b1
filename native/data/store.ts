// Reading an imported dataset back: dataset.json (the DatasetVersion) and the split files, one JSON row a line.
import { createReadStream, closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { StringDecoder } from 'node:string_decoder';
import { DatasetError, SPLITS, type DatasetVersion, type Example, type SplitName } from './types.js';

export const DATASET_FILE = 'dataset.json';
export const splitFile = (destDir: string, split: SplitName): string => join(destDir, `${split}.jsonl`);

function checkSplit(split: SplitName): void {
  if (!SPLITS.includes(split))
    throw new DatasetError('bad-options', `unknown split "${String(split)}" (expected train, validation or test)`);
}

/** The DatasetVersion of an imported dataset folder. */
export function readDatasetVersion(destDir: string): DatasetVersion {
  const file = join(destDir, DATASET_FILE);
  if (!existsSync(file))
    throw new DatasetError('not-found', `${destDir}: not an imported dataset (no ${DATASET_FILE})`, { file });
  let v: DatasetVersion;
  try {
    v = JSON.parse(readFileSync(file, 'utf8')) as DatasetVersion;
  } catch (e) {
    throw new DatasetError('bad-dataset', `${file}: not valid JSON: ${(e as Error).message}`, { file }, { cause: e });
  }
  if (v?.version !== 1 || typeof v.digest !== 'string')
    throw new DatasetError(
      'bad-dataset',
      `${file}: not a dataset version this build can read (version ${String(v?.version)})`,
      { file },
    );
  return v;
}

function parseLine(file: string, line: string, n: number): Example {
  try {
    return JSON.parse(line) as Example;
  } catch (e) {
    throw new DatasetError(
      'bad-dataset',
      `${file}: line ${n}: corrupt row (${(e as Error).message}); import the dataset again`,
      { file, line: n },
      { cause: e },
    );
  }
}

/** The rows of one split, streamed. */
export async function* readSplit(destDir: string, split: SplitName): AsyncGenerator<Example> {
  checkSplit(split);
  const file = splitFile(destDir, split);
  if (!existsSync(file))
    throw new DatasetError('not-found', `${destDir}: no ${split} split (${file} is missing)`, { file });
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  try {
    for await (const line of rl) {
      n++;
      if (line.length > 0) yield parseLine(file, line, n);
    }
  } finally {
    rl.close();
  }
}

/** The rows of one split, read synchronously in 1 MiB chunks (the file is never held whole). */
export function* readSplitSync(destDir: string, split: SplitName): Generator<Example> {
  checkSplit(split);
  const file = splitFile(destDir, split);
  if (!existsSync(file))
    throw new DatasetError('not-found', `${destDir}: no ${split} split (${file} is missing)`, { file });
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    const dec = new StringDecoder('utf8');
    let rest = '';
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, 0, buf.length, null);
      const text = got > 0 ? rest + dec.write(buf.subarray(0, got)) : rest + dec.end();
      const lines = text.split('\n');
      rest = got > 0 ? (lines.pop() as string) : '';
      for (const line of lines) {
        n++;
        if (line.length > 0) yield parseLine(file, line, n);
      }
      if (got === 0) break;
    }
  } finally {
    closeSync(fd);
  }
}

/** All rows of one split in memory (for small datasets and tests). */
export function loadSplit(destDir: string, split: SplitName): Example[] {
  return [...readSplitSync(destDir, split)];
}

/**
 * Why a run on this version would have nothing to be evaluated on, or null: its validation split is empty although a
 * fraction or a file was asked for. A version imported with no validation at all (fraction 0, no file) was asked to.
 */
export function missingValidation(v: DatasetVersion): string | null {
  if (v.rows.validation > 0) return null;
  const file = v.split.files.validation;
  if (!file && !(v.split.validation > 0)) return null;
  const total = v.rows.train + v.rows.test;
  const distinct = total - (v.stats.duplicates ?? 0);
  const why = file
    ? `its validation file ${file} has no rows`
    : `a validation fraction of ${v.split.validation} was asked for, but its ${total} rows (${distinct} distinct) all ` +
      `stayed in train: the split keeps copies of a row together, and train keeps a row of every label`;
  return `the dataset version ${v.digest.slice(0, 12)} has no validation rows (${why}), so a run on it would end with no metrics; import it again with a validation file or more distinct rows, or with a validation fraction of 0 to train without evaluation`;
}
