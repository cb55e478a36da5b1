// Token statistics and the tokenization cache of an imported dataset.
//
// What a row becomes (the same rule for the statistics and the cache):
//   classification, regression   encode(text)                     with the tokenizer's special tokens
//   pair-classification          encode(text, text_pair)          + token type ids
//   causal-lm                    encode(prompt) ++ tokens(completion) ++ [eos]; promptLength = the prompt's part
//                                (or encode(text) ++ [eos]); eos only when the tokenizer has one
//   seq2seq                      encode(source), and the target as labels: encode(target)
//   chat                         the conversation rendered with the chat template, tokenized without adding special
//                                tokens; assistantMask marks the assistant's tokens (see models/chat-template.ts)
// With maxLength: pairs are truncated 'longest_first'; causal-lm rows are cut on the right (promptLength ≤ length);
// chat rows as encodeChat cuts them.
//
// Cache: destDir/cache/<key>/ with key = sha256(dataset digest, sha256 of tokenizer.json (+ tokenizer_config.json
// and special_tokens_map.json, which change special tokens), maxLength, and for a chat the template's text). Built in a temp folder, each file written
// atomically, the folder renamed into place at the end; a cache that does not check out is rebuilt.
// Files: meta.json and per split <split>.<array>.bin, raw little-endian typed arrays.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { TextTokenizer } from '../models/tokenizer.js';
import { encodeChat, type ChatTemplate } from '../models/chat-template.js';
import { writeFileAtomic } from '../files/atomic.js';
import { tempName } from '../files/temp.js';
import { removeStale } from './import.js';
import { readDatasetVersion, readSplitSync } from './store.js';
import { DatasetError, SPLITS, type DatasetVersion, type Example, type SplitName, type TaskKind } from './types.js';
import type { LengthStats } from '../contract/types.js';

export type { LengthStats } from '../contract/types.js';

/** What the dataset code needs of a tokenizer (a TextTokenizer, or a wrapper of one). */
export type DataTokenizer = Pick<TextTokenizer, 'encode' | 'source' | 'eosId' | 'bosId'>;

export interface TokenLengthStats extends LengthStats {
  /** seq2seq: the targets (the main statistics are the sources). */
  target?: LengthStats;
}

export interface EncodedExample {
  ids: number[];
  typeIds?: number[];
  promptLength?: number;
  targetIds?: number[];
  /** chat: 1 for each of the assistant's tokens (the labels), else 0. */
  assistantMask?: Uint8Array;
  truncated: boolean;
}

/** One normalised row to token ids, as the task feeds a model (a chat with its chat template). */
export function encodeExample(
  tok: DataTokenizer,
  task: TaskKind,
  ex: Example,
  maxLength?: number,
  chat?: ChatTemplate,
): EncodedExample {
  const opts = maxLength === undefined ? {} : { maxLength };
  switch (task) {
    case 'chat': {
      if (!chat) throw new DatasetError('bad-options', 'a chat dataset is tokenized with a chat template: give one');
      const e = encodeChat(tok, chat, ex.messages ?? [], maxLength);
      return { ids: e.ids, assistantMask: e.assistant, truncated: e.truncated };
    }
    case 'classification':
    case 'regression': {
      const e = tok.encode(ex.text as string, undefined, opts);
      return { ids: e.ids, truncated: e.truncated };
    }
    case 'pair-classification': {
      const e = tok.encode(ex.text as string, ex.text_pair as string, opts);
      return { ids: e.ids, typeIds: e.typeIds, truncated: e.truncated };
    }
    case 'causal-lm': {
      const eos = tok.eosId === undefined ? [] : [tok.eosId];
      let ids: number[];
      let promptLength: number | undefined;
      if (ex.prompt !== undefined) {
        const p = tok.encode(ex.prompt).ids;
        const c = tok.encode(ex.completion as string, undefined, { addSpecialTokens: false }).ids;
        ids = [...p, ...c, ...eos];
        promptLength = p.length;
      } else {
        ids = [...tok.encode(ex.text as string).ids, ...eos];
      }
      const truncated = maxLength !== undefined && ids.length > maxLength;
      if (truncated) ids = ids.slice(0, maxLength);
      if (promptLength !== undefined) promptLength = Math.min(promptLength, ids.length);
      return { ids, ...(promptLength !== undefined ? { promptLength } : {}), truncated };
    }
    case 'seq2seq': {
      const s = tok.encode(ex.source as string, undefined, opts);
      const t = tok.encode(ex.target as string, undefined, opts);
      return { ids: s.ids, targetIds: t.ids, truncated: s.truncated || t.truncated };
    }
  }
}

function lengthStats(lengths: number[]): LengthStats {
  const n = lengths.length;
  if (n === 0) return { count: 0, mean: 0, p50: 0, p95: 0, max: 0, histogram: [] };
  const sorted = Int32Array.from(lengths).sort();
  const rank = (p: number): number => sorted[Math.max(0, Math.ceil(p * n) - 1)];
  const max = sorted[n - 1];
  let sum = 0;
  for (const x of sorted) sum += x;
  const histogram: { bucketUpper: number; count: number }[] = [];
  let i = 0;
  for (let upper = 8; ; upper *= 2) {
    let count = 0;
    while (i < n && sorted[i] <= upper) {
      count++;
      i++;
    }
    histogram.push({ bucketUpper: upper, count });
    if (upper >= max) break;
  }
  return { count: n, mean: sum / n, p50: rank(0.5), p95: rank(0.95), max, histogram };
}

/** Token lengths of the train split (special tokens included, no truncation); a chat's under its chat template. */
export function tokenLengthStats(destDir: string, tokenizer: DataTokenizer, chat?: ChatTemplate): TokenLengthStats {
  const version = readDatasetVersion(destDir);
  const lengths: number[] = [];
  const targets: number[] = [];
  for (const ex of readSplitSync(destDir, 'train')) {
    const e = encodeExample(tokenizer, version.task, ex, undefined, chat);
    lengths.push(e.ids.length);
    if (e.targetIds) targets.push(e.targetIds.length);
  }
  const out: TokenLengthStats = lengthStats(lengths);
  if (version.task === 'seq2seq') out.target = lengthStats(targets);
  return out;
}

export interface TokenizedSplit {
  count: number;
  /** Row i's tokens are ids[offsets[i] .. offsets[i + 1]). */
  offsets: Uint32Array;
  ids: Int32Array;
  /** pair-classification: token type ids, aligned with ids. */
  typeIds?: Uint8Array;
  /** causal-lm with prompt + completion: how many leading tokens of each row are the prompt (no loss there). */
  promptLengths?: Uint32Array;
  /** seq2seq: the targets, as ids/offsets. */
  targetOffsets?: Uint32Array;
  targetIds?: Int32Array;
  /** chat: 1 for each of the assistant's tokens, aligned with ids. */
  assistantMask?: Uint8Array;
  /** classification: the class index (into DatasetVersion.labels); regression: the value. */
  labels?: Int32Array | Float64Array;
  /** Rows that truncation shortened. */
  truncated: number;
}

export interface TokenizedDataset {
  key: string;
  dir: string;
  /** True when the arrays were read from the cache (the tokenizer was not called). */
  fromCache: boolean;
  maxLength: number;
  digest: string;
  splits: Record<SplitName, TokenizedSplit>;
}

interface CacheMeta {
  version: 1;
  key: string;
  digest: string;
  tokenizerSha256: string;
  tokenizerConfigSha256: string;
  maxLength: number;
  task: TaskKind;
  splits: Record<
    SplitName,
    { count: number; tokens: number; targetTokens?: number; truncated: number; arrays: string[] }
  >;
}

const ARRAYS = {
  offsets: Uint32Array,
  ids: Int32Array,
  typeIds: Uint8Array,
  promptLengths: Uint32Array,
  targetOffsets: Uint32Array,
  targetIds: Int32Array,
  assistantMask: Uint8Array,
} as const;
type ArrayName = keyof typeof ARRAYS | 'labels';

function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** sha256 of tokenizer.json, and of the config files beside it (empty-string hash when there are none). */
function tokenizerHashes(tok: DataTokenizer): { json: string; config: string } {
  const file = tok.source;
  if (typeof file !== 'string' || !existsSync(file))
    throw new DatasetError(
      'bad-options',
      `tokenizer: its tokenizer.json (${String(file)}) cannot be read, so it cannot key a cache`,
    );
  const config = createHash('sha256');
  for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
    const f = join(dirname(file), name);
    config.update(`${name}:${existsSync(f) ? sha256File(f) : '-'}\n`);
  }
  return { json: sha256File(file), config: config.digest('hex') };
}

/** The folder name of a cache entry. */
export function tokenCacheKey(
  digest: string,
  tokenizerSha256: string,
  tokenizerConfigSha256: string,
  maxLength: number,
  chatTemplate?: string,
): string {
  const h = createHash('sha256').update(
    `delta-studio tokens v1\n${digest}\n${tokenizerSha256}\n${tokenizerConfigSha256}\n${maxLength}\n`,
  );
  if (chatTemplate !== undefined) h.update(`chat template\n${chatTemplate}`);
  return h.digest('hex').slice(0, 32);
}

class Grow<T extends Int32Array | Uint32Array | Uint8Array | Float64Array> {
  private buf: T;
  length = 0;
  constructor(private readonly make: (n: number) => T) {
    this.buf = make(1024);
  }
  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = this.make(this.buf.length * 2);
      next.set(this.buf as never);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }
  pushAll(vs: number[]): void {
    for (const v of vs) this.push(v);
  }
  get array(): T {
    return this.buf.slice(0, this.length) as T;
  }
}

function build(
  destDir: string,
  version: DatasetVersion,
  tok: DataTokenizer,
  maxLength: number,
  split: SplitName,
  chat?: ChatTemplate,
): TokenizedSplit {
  const task = version.task;
  const offsets = new Grow((n) => new Uint32Array(n));
  const ids = new Grow((n) => new Int32Array(n));
  const typeIds = new Grow((n) => new Uint8Array(n));
  const promptLengths = new Grow((n) => new Uint32Array(n));
  const targetOffsets = new Grow((n) => new Uint32Array(n));
  const targetIds = new Grow((n) => new Int32Array(n));
  const classLabels = new Grow((n) => new Int32Array(n));
  const numLabels = new Grow((n) => new Float64Array(n));
  const assistantMask = new Grow((n) => new Uint8Array(n));
  const classIndex = new Map((version.labels ?? []).map((l, i) => [l, i]));
  let truncated = 0;
  let count = 0;
  let causalPrompt = false;
  offsets.push(0);
  targetOffsets.push(0);
  for (const ex of readSplitSync(destDir, split)) {
    const e = encodeExample(tok, task, ex, maxLength, chat);
    ids.pushAll(e.ids);
    if (e.assistantMask) for (const m of e.assistantMask) assistantMask.push(m);
    if (ids.length > 0xffffffff)
      throw new DatasetError(
        'bad-dataset',
        `${destDir}: the ${split} split has more than 2^32 tokens; the cache cannot index it`,
      );
    offsets.push(ids.length);
    if (e.typeIds) typeIds.pushAll(e.typeIds);
    if (e.promptLength !== undefined) {
      causalPrompt = true;
      promptLengths.push(e.promptLength);
    }
    if (e.targetIds) {
      targetIds.pushAll(e.targetIds);
      targetOffsets.push(targetIds.length);
    }
    if (task === 'classification' || task === 'pair-classification') {
      const c = classIndex.get(ex.label as string);
      if (c === undefined)
        throw new DatasetError(
          'bad-dataset',
          `${destDir}: ${split} row ${count + 1} has label '${String(ex.label)}', not in the dataset's labels; import it again`,
        );
      classLabels.push(c);
    } else if (task === 'regression') {
      numLabels.push(ex.label as number);
    }
    if (e.truncated) truncated++;
    count++;
  }
  const out: TokenizedSplit = { count, offsets: offsets.array, ids: ids.array, truncated };
  if (task === 'pair-classification') out.typeIds = typeIds.array;
  if (task === 'causal-lm' && causalPrompt) out.promptLengths = promptLengths.array;
  if (task === 'chat') out.assistantMask = assistantMask.array;
  if (task === 'seq2seq') {
    out.targetOffsets = targetOffsets.array;
    out.targetIds = targetIds.array;
  }
  if (task === 'classification' || task === 'pair-classification') out.labels = classLabels.array;
  if (task === 'regression') out.labels = numLabels.array;
  return out;
}

const bytesOf = (
  a: ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; byteLength: number },
): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function readArray(
  dir: string,
  split: SplitName,
  name: ArrayName,
  task: TaskKind,
): Int32Array | Uint32Array | Uint8Array | Float64Array {
  const raw = readFileSync(join(dir, `${split}.${name}.bin`));
  const copy = new Uint8Array(raw.length);
  copy.set(raw);
  const Ctor = name === 'labels' ? (task === 'regression' ? Float64Array : Int32Array) : ARRAYS[name];
  if (copy.length % Ctor.BYTES_PER_ELEMENT !== 0)
    throw new Error(`${split}.${name}.bin: ${copy.length} bytes is not a whole number of elements`);
  return new Ctor(copy.buffer);
}

function loadCache(dir: string, key: string, version: DatasetVersion, maxLength: number): TokenizedDataset | undefined {
  const metaFile = join(dir, 'meta.json');
  if (!existsSync(metaFile)) return undefined;
  try {
    const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as CacheMeta;
    if (meta.version !== 1 || meta.key !== key || meta.digest !== version.digest || meta.maxLength !== maxLength)
      return undefined;
    const splits = {} as Record<SplitName, TokenizedSplit>;
    for (const s of SPLITS) {
      const m = meta.splits[s];
      const t: Record<string, unknown> = { count: m.count, truncated: m.truncated };
      for (const name of m.arrays as ArrayName[]) t[name] = readArray(dir, s, name, version.task);
      const split = t as unknown as TokenizedSplit;
      if (split.offsets.length !== m.count + 1 || split.ids.length !== m.tokens || split.offsets[m.count] !== m.tokens)
        return undefined;
      if (split.labels && split.labels.length !== m.count) return undefined;
      if (split.assistantMask && split.assistantMask.length !== split.ids.length) return undefined;
      splits[s] = split;
    }
    return { key, dir, fromCache: true, maxLength, digest: version.digest, splits };
  } catch {
    return undefined; // unreadable: rebuilt
  }
}

/**
 * Token ids of every split, truncated to `maxLength`, from destDir/cache/<key>/ when it is there (the tokenizer is
 * then not called), else tokenized and cached.
 */
export function tokenizeCached(
  destDir: string,
  tokenizer: DataTokenizer,
  maxLength: number,
  chat?: ChatTemplate,
): TokenizedDataset {
  if (!Number.isInteger(maxLength) || maxLength <= 0)
    throw new DatasetError('bad-options', `maxLength must be a positive integer, got ${String(maxLength)}`);
  const version = readDatasetVersion(destDir);
  const hashes = tokenizerHashes(tokenizer);
  const key = tokenCacheKey(version.digest, hashes.json, hashes.config, maxLength, chat?.text);
  const cacheRoot = join(destDir, 'cache');
  const dir = join(cacheRoot, key);
  const cached = loadCache(dir, key, version, maxLength);
  if (cached) return cached;

  const splits = {} as Record<SplitName, TokenizedSplit>;
  for (const s of SPLITS) splits[s] = build(destDir, version, tokenizer, maxLength, s, chat);

  mkdirSync(cacheRoot, { recursive: true });
  removeStale(cacheRoot, `${key}.building`);
  const tmp = join(cacheRoot, tempName(`${key}.building`));
  mkdirSync(tmp);
  try {
    const metaSplits = {} as CacheMeta['splits'];
    for (const s of SPLITS) {
      const t = splits[s] as unknown as Record<string, unknown>;
      const arrays = (
        [
          'offsets',
          'ids',
          'typeIds',
          'promptLengths',
          'targetOffsets',
          'targetIds',
          'assistantMask',
          'labels',
        ] as ArrayName[]
      ).filter((n) => t[n] !== undefined);
      for (const name of arrays) writeFileAtomic(join(tmp, `${s}.${name}.bin`), bytesOf(t[name] as Int32Array));
      metaSplits[s] = {
        count: splits[s].count,
        tokens: splits[s].ids.length,
        ...(splits[s].targetIds ? { targetTokens: splits[s].targetIds?.length } : {}),
        truncated: splits[s].truncated,
        arrays,
      };
    }
    const meta: CacheMeta = {
      version: 1,
      key,
      digest: version.digest,
      tokenizerSha256: hashes.json,
      tokenizerConfigSha256: hashes.config,
      maxLength,
      task: version.task,
      splits: metaSplits,
    };
    writeFileAtomic(join(tmp, 'meta.json'), Buffer.from(`${JSON.stringify(meta, null, 2)}\n`));
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true }); // a cache that did not check out
    try {
      renameSync(tmp, dir);
    } catch (e) {
      if (!existsSync(join(dir, 'meta.json'))) throw e; // else another process finished the same cache first
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { key, dir, fromCache: false, maxLength, digest: version.digest, splits };
}
