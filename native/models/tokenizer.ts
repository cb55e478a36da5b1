// Text tokenizer for Hugging Face model folders: loads tokenizer.json (+ tokenizer_config.json and
// special_tokens_map.json when present) through @huggingface/tokenizers, and adds what that library lacks and
// training needs: pairs, truncation, padding and batching into int64 [batch, seq] tensors, the way the
// `transformers` fast tokenizers (the Rust `tokenizers` crate) behave.
//
// What the library does and does not do (checked in its dist source, v0.2.0):
// - `tokenize(text, { add_special_tokens: false })` gives the tokens of one text without special tokens;
//   `post_processor.post_process(tokens, tokens_pair, add_special_tokens)` adds the special tokens; tokens are
//   strings until the end (`token_to_id`).
// - Its ByteLevel post-processor (GPT-2 and friends) returns the pair unmerged ({ tokens, tokens_pair }), so
//   `encode(a, { text_pair: b })` silently drops b. Here a pair with no template is a concatenation with type
//   ids 0 then 1, as in Rust (`default_process`).
// - Its RobertaProcessing gives the second text type id 1; Rust ("Roberta is weird, and every encoding is
//   type_id=0") and transformers give 0 everywhere. Here: 0.
// - `decode([])` throws; here it is ''. Ids with no token are skipped (as Rust does), not turned into unk.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import type { HostTensor } from '../onnx/graph.js';
import { readJsonFile } from '../onnx/safetensors.js';

export type TruncationStrategy = 'longest_first' | 'only_first' | 'only_second' | 'none';
export type PaddingStrategy = 'longest' | 'max_length' | 'none';
export type Side = 'left' | 'right';

export interface EncodeOptions {
  /** Truncate to this many tokens including special tokens; also the target of padding 'max_length'. */
  maxLength?: number;
  /** Default 'longest_first' when maxLength is set, else 'none'. */
  truncation?: TruncationStrategy;
  /** Which end truncation cuts; default tokenizer_config.json `truncation_side`, else 'right'. */
  truncationSide?: Side;
  /** Default 'longest'. */
  padding?: PaddingStrategy;
  /** Default tokenizer_config.json `padding_side`, else tokenizer.json `padding.direction`, else 'right'. */
  paddingSide?: Side;
  /** Default true. */
  addSpecialTokens?: boolean;
}

export type EncodeOneOptions = Pick<EncodeOptions, 'maxLength' | 'truncation' | 'truncationSide' | 'addSpecialTokens'>;

export type Int64Tensor = HostTensor & { dtype: 'int64'; data: BigInt64Array };

/** All tensors are [batch, seq] int64. */
export interface BatchEncoding {
  input_ids: Int64Tensor;
  attention_mask: Int64Tensor;
  token_type_ids: Int64Tensor;
  /** Real tokens per row (special tokens included, padding excluded). */
  lengths: number[];
  /** Whether truncation removed tokens from the row. */
  truncated: boolean[];
}

export interface Encoded {
  ids: number[];
  typeIds: number[];
  tokens: string[];
  truncated: boolean;
}

type Json = Record<string, unknown>;

/** What the library has at run time but its typings mark private or leave out. */
interface LibInternals {
  added_tokens_map?: Map<string, { id: number }>;
  model?: { unk_token_id?: number; unk_token?: string };
}

interface LibPostProcessor {
  config: { type?: string };
  processors?: LibPostProcessor[];
  post_process(
    tokens: string[],
    tokens_pair?: string[] | null,
    add_special_tokens?: boolean,
  ): {
    tokens: string[];
    tokens_pair?: string[] | null;
    token_type_ids?: number[];
  };
}

const SPECIAL_KEYS = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
] as const;

function readJson(file: string): Json {
  const value = readJsonFile(file);
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new Error(`${file}: not valid JSON: expected an object`);
  return value as Json;
}

/** A special token as written in tokenizer_config.json / special_tokens_map.json: a string or an AddedToken dict. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

function sideOf(v: unknown): Side | undefined {
  if (typeof v !== 'string') return undefined;
  const s = v.toLowerCase();
  return s === 'left' || s === 'right' ? s : undefined;
}

const zeros = (n: number): number[] => new Array<number>(n).fill(0);

export class TextTokenizer {
  /** Ids run over [0, vocabSize): the model vocabulary plus added tokens (`len(tokenizer)` in transformers). */
  readonly vocabSize: number;
  /** The pad id; the eos id when there is no pad token (see notes); -1 when there is neither. */
  readonly padId: number;
  readonly padToken?: string;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly unkId?: number;
  readonly paddingSide: Side;
  readonly truncationSide: Side;
  /** tokenizer_config.json `model_max_length`, when it is a real limit (not the 1e30 placeholder). */
  readonly modelMaxLength?: number;
  /** Things a user should know about how this tokenizer was set up (e.g. padding falls back to eos). */
  readonly notes: string[] = [];
  /** Where it was loaded from, for error messages. */
  readonly source: string;
  /**
   * The named special tokens as text (bos_token, eos_token, …; those set), as transformers gives them to a chat
   * template.
   */
  readonly specialTokens: Readonly<Partial<Record<(typeof SPECIAL_KEYS)[number], string>>>;

  private readonly lib: Tokenizer;
  private readonly addedMap?: Map<string, { id: number }>;
  private readonly modelUnkId?: number;
  private readonly processors: LibPostProcessor[];
  private readonly specialIds: Set<number>;
  private readonly nSpecial: { single: number; pair: number };

  private constructor(source: string, tokenizerJson: Json, config: Json, specialMap: Json) {
    this.source = source;
    // The library needs these keys present (null is fine) and an added_tokens list.
    const tj: Json = { ...tokenizerJson };
    for (const k of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) if (tj[k] === undefined) tj[k] = null;
    if (tj.added_tokens === undefined || tj.added_tokens === null) tj.added_tokens = [];
    // Special tokens: tokenizer_config.json wins over special_tokens_map.json (as transformers merges them);
    // AddedToken dicts become plain strings, which is what the library expects.
    const merged: Json = { ...config };
    for (const key of SPECIAL_KEYS) {
      const content = tokenContent(config[key]) ?? tokenContent(specialMap[key]);
      if (content !== undefined) merged[key] = content;
      else delete merged[key];
    }
    const extra = (config.additional_special_tokens ?? specialMap.additional_special_tokens) as unknown;
    if (Array.isArray(extra))
      merged.additional_special_tokens = extra.map(tokenContent).filter((s): s is string => s !== undefined);
    else delete merged.additional_special_tokens;
    this.specialTokens = Object.fromEntries(
      SPECIAL_KEYS.filter((k) => typeof merged[k] === 'string').map((k) => [k, merged[k] as string]),
    );

    try {
      this.lib = new Tokenizer(tj, merged);
    } catch (e) {
      throw new Error(`${source}: cannot build the tokenizer: ${(e as Error).message}`, { cause: e });
    }
    const internals = this.lib as unknown as LibInternals;
    this.addedMap = internals.added_tokens_map instanceof Map ? internals.added_tokens_map : undefined;
    this.modelUnkId = typeof internals.model?.unk_token_id === 'number' ? internals.model.unk_token_id : undefined;

    let maxId = -1;
    for (const id of this.lib.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;

    const idOf = (key: (typeof SPECIAL_KEYS)[number]): number | undefined => {
      const content = merged[key] as string | undefined;
      if (content === undefined) return undefined;
      const id = this.lib.token_to_id(content);
      if (id === undefined) this.notes.push(`${key} "${content}" is not in the vocabulary; ignored`);
      return id;
    };
    this.bosId = idOf('bos_token');
    this.eosId = idOf('eos_token');
    this.unkId = idOf('unk_token') ?? this.modelUnkId;

    // Pad token: tokenizer_config.json, special_tokens_map.json, then tokenizer.json's padding section.
    const padding = (tokenizerJson.padding ?? null) as Json | null;
    let padToken: string | undefined;
    let padId: number | undefined;
    const padCandidates: [string | undefined, string][] = [
      [tokenContent(config.pad_token), 'tokenizer_config.json'],
      [tokenContent(specialMap.pad_token), 'special_tokens_map.json'],
      [typeof padding?.pad_token === 'string' ? padding.pad_token : undefined, 'tokenizer.json padding'],
    ];
    for (const [content, where] of padCandidates) {
      if (content === undefined) continue;
      const id = this.lib.token_to_id(content);
      if (id === undefined) {
        this.notes.push(`pad_token "${content}" from ${where} is not in the vocabulary; ignored`);
        continue;
      }
      padToken = content;
      padId = id;
      break;
    }
    if (padId === undefined && padding && typeof padding.pad_id === 'number') padId = padding.pad_id;
    if (padId === undefined && this.eosId !== undefined) {
      padId = this.eosId;
      padToken = merged.eos_token as string;
      this.notes.push(
        `no pad token: padding uses the eos token "${padToken}" (id ${padId}); padded positions have attention mask 0`,
      );
    }
    this.padId = padId ?? -1;
    this.padToken = padToken;

    this.paddingSide = sideOf(config.padding_side) ?? sideOf(padding?.direction) ?? 'right';
    const truncation = (tokenizerJson.truncation ?? null) as Json | null;
    this.truncationSide = sideOf(config.truncation_side) ?? sideOf(truncation?.direction) ?? 'right';
    const mml = config.model_max_length;
    if (typeof mml === 'number' && Number.isInteger(mml) && mml > 0 && mml < 1e9) this.modelMaxLength = mml;

    // Post-processors that change tokens, in order (ByteLevel only trims offsets, which we do not keep).
    const flat: LibPostProcessor[] = [];
    const walk = (p: LibPostProcessor | null | undefined): void => {
      if (!p) return;
      if (p.config?.type === 'Sequence' && Array.isArray(p.processors)) p.processors.forEach(walk);
      else if (p.config?.type !== 'ByteLevel') flat.push(p);
    };
    walk(this.lib.post_processor as unknown as LibPostProcessor | null);
    this.processors = flat;

    this.specialIds = new Set<number>();
    for (const [id, tok] of this.lib.get_added_tokens_decoder()) if (tok.special) this.specialIds.add(id);
    for (const key of SPECIAL_KEYS) {
      const content = merged[key] as string | undefined;
      const id = content === undefined ? undefined : this.lib.token_to_id(content);
      if (id !== undefined) this.specialIds.add(id);
    }
    for (const content of (merged.additional_special_tokens as string[] | undefined) ?? []) {
      const id = this.lib.token_to_id(content);
      if (id !== undefined) this.specialIds.add(id);
    }

    const count = (pair: boolean): number => {
      try {
        return this.postProcess([], pair ? [] : null, true).tokens.length;
      } catch {
        return -1; // e.g. a template without a pair form: reported when a pair is encoded
      }
    };
    this.nSpecial = { single: count(false), pair: count(true) };
    if (this.nSpecial.single < 0)
      throw new Error(`${source}: cannot build the tokenizer: its post-processor fails on a single text`);
  }

  /** Reads `dir`/tokenizer.json, plus tokenizer_config.json and special_tokens_map.json when present. */
  static fromFolder(dir: string): TextTokenizer {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${dir}: not a folder`);
    const file = join(dir, 'tokenizer.json');
    if (!existsSync(file)) throw new Error(`${dir}: no tokenizer.json`);
    const tokenizerJson = readJson(file);
    const configFile = join(dir, 'tokenizer_config.json');
    const config = existsSync(configFile) ? readJson(configFile) : {};
    const mapFile = join(dir, 'special_tokens_map.json');
    const specialMap = existsSync(mapFile) ? readJson(mapFile) : {};
    return new TextTokenizer(file, tokenizerJson, config, specialMap);
  }

  /** How many special tokens the post-processor adds to a single text or a pair. */
  numSpecialTokens(pair: boolean): number {
    const n = pair ? this.nSpecial.pair : this.nSpecial.single;
    if (n < 0) throw new Error(`${this.source}: the post-processor cannot handle a pair of texts`);
    return n;
  }

  /** The tokens of one text, without special tokens. */
  tokenize(text: string): string[] {
    if (typeof text !== 'string')
      throw new TypeError(`text must be a string, got ${text === null ? 'null' : typeof text}`);
    return text.length === 0 ? [] : this.lib.tokenize(text, { add_special_tokens: false });
  }

  tokenToId(token: string): number | undefined {
    return this.addedMap?.get(token)?.id ?? this.lib.token_to_id(token);
  }

  /** Whether `id` is a special token (named, or an added token marked special): what decode(…, true) drops. */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  idToToken(id: number): string | undefined {
    return this.lib.id_to_token(id);
  }

  /** One text or pair: ids and token type ids, truncated as asked, not padded. */
  encode(text: string, pair?: string, opts: EncodeOneOptions = {}): Encoded {
    return this.encodeRow(text, pair ?? null, opts, 0);
  }

  encodeBatch(texts: string[] | [string, string][], opts: EncodeOptions = {}): BatchEncoding {
    if (!Array.isArray(texts))
      throw new TypeError('encodeBatch: texts must be an array of strings or of [text, text_pair] pairs');
    const rows = texts as (string | [string, string])[];
    const pairs = rows.length > 0 && Array.isArray(rows[0]);
    const encoded = rows.map((row, i) => {
      if (pairs !== Array.isArray(row))
        throw new TypeError(
          `encodeBatch: row ${i} is ${Array.isArray(row) ? 'a pair' : 'a single text'}, row 0 is not: a batch is all single texts or all pairs`,
        );
      if (Array.isArray(row)) {
        if (row.length !== 2 || typeof row[0] !== 'string' || typeof row[1] !== 'string')
          throw new TypeError(`encodeBatch: row ${i} must be [text, text_pair] (two strings)`);
        return this.encodeRow(row[0], row[1], opts, i);
      }
      if (typeof row !== 'string')
        throw new TypeError(`encodeBatch: row ${i} must be a string, got ${row === null ? 'null' : typeof row}`);
      return this.encodeRow(row, null, opts, i);
    });

    const lengths = encoded.map((e) => e.ids.length);
    const longest = lengths.reduce((a, b) => Math.max(a, b), 0);
    const padding = opts.padding ?? 'longest';
    let seq: number;
    if (padding === 'none') {
      const odd = lengths.find((n) => n !== longest);
      if (odd !== undefined)
        throw new Error(
          `padding 'none' but rows have different lengths (${odd} and ${longest}): a batch tensor must be rectangular; use padding 'longest' or 'max_length'`,
        );
      seq = longest;
    } else if (padding === 'max_length') {
      const target = opts.maxLength ?? this.modelMaxLength;
      if (target === undefined)
        throw new Error(`padding 'max_length' needs maxLength (${this.source} has no model_max_length)`);
      this.checkMaxLength(target);
      seq = Math.max(target, longest); // longer rows exist only with truncation 'none'
    } else if (padding === 'longest') {
      seq = longest;
    } else {
      throw new Error(`unknown padding "${String(padding)}" (expected 'longest', 'max_length' or 'none')`);
    }
    if (lengths.some((n) => n < seq)) {
      if (this.padId < 0)
        throw new Error(
          `${this.source}: no pad token (none in tokenizer_config.json, special_tokens_map.json or tokenizer.json, and no eos token to fall back on): cannot pad rows of different lengths`,
        );
    }
    const side = opts.paddingSide ?? this.paddingSide;
    if (side !== 'left' && side !== 'right')
      throw new Error(`unknown paddingSide "${String(side)}" (expected 'left' or 'right')`);

    const batch = encoded.length;
    const ids = new BigInt64Array(batch * seq);
    const mask = new BigInt64Array(batch * seq);
    const types = new BigInt64Array(batch * seq);
    const pad = BigInt(this.padId);
    for (let r = 0; r < batch; r++) {
      const e = encoded[r];
      const n = e.ids.length;
      const start = side === 'left' ? seq - n : 0;
      const base = r * seq;
      for (let j = 0; j < seq; j++) ids[base + j] = pad;
      for (let j = 0; j < n; j++) {
        ids[base + start + j] = BigInt(e.ids[j]);
        mask[base + start + j] = 1n;
        types[base + start + j] = BigInt(e.typeIds[j]);
      }
    }
    const shape = [batch, seq];
    return {
      input_ids: { dtype: 'int64', shape, data: ids },
      attention_mask: { dtype: 'int64', shape: [...shape], data: mask },
      token_type_ids: { dtype: 'int64', shape: [...shape], data: types },
      lengths,
      truncated: encoded.map((e) => e.truncated),
    };
  }

  /** Ids back to text. Ids with no token are skipped; `skipSpecial` drops special tokens (pad, bos, eos, …). */
  decode(ids: number[], skipSpecial = false): string {
    if (!Array.isArray(ids)) throw new TypeError('decode: ids must be an array of integers');
    const kept: number[] = [];
    for (const id of ids) {
      if (!Number.isInteger(id)) throw new TypeError(`decode: ids must be integers, got ${String(id)}`);
      if (this.lib.id_to_token(id) === undefined) continue;
      if (skipSpecial && this.specialIds.has(id)) continue;
      kept.push(id);
    }
    if (kept.length === 0) return '';
    return this.lib.decode(kept, { skip_special_tokens: skipSpecial });
  }

  private checkMaxLength(maxLength: number): void {
    if (!Number.isInteger(maxLength) || maxLength < 0)
      throw new Error(`maxLength must be a non-negative integer, got ${maxLength}`);
  }

  private encodeRow(text: string, pair: string | null, opts: EncodeOneOptions, row: number): Encoded {
    const add = opts.addSpecialTokens ?? true;
    let a = this.tokenize(text);
    let b = pair === null ? null : this.tokenize(pair);
    const strategy = opts.truncation ?? (opts.maxLength !== undefined ? 'longest_first' : 'none');
    if (!['longest_first', 'only_first', 'only_second', 'none'].includes(strategy)) {
      throw new Error(
        `unknown truncation "${String(strategy)}" (expected 'longest_first', 'only_first', 'only_second' or 'none')`,
      );
    }
    let truncated = false;
    if (strategy !== 'none') {
      const maxLength = opts.maxLength ?? this.modelMaxLength;
      if (maxLength === undefined)
        throw new Error(`truncation '${strategy}' needs maxLength (${this.source} has no model_max_length)`);
      this.checkMaxLength(maxLength);
      const nSpecial = add ? this.numSpecialTokens(b !== null) : 0;
      if (maxLength < nSpecial) {
        throw new Error(
          `maxLength ${maxLength} is smaller than the ${nSpecial} special tokens the post-processor adds to ${b !== null ? 'a pair of texts' : 'a text'}: use maxLength ≥ ${nSpecial}`,
        );
      }
      const side = opts.truncationSide ?? this.truncationSide;
      const cut = (tokens: string[], keep: number): string[] =>
        side === 'left' ? tokens.slice(tokens.length - keep) : tokens.slice(0, keep);
      const budget = maxLength - nSpecial;
      const total = a.length + (b?.length ?? 0);
      if (total > budget) {
        truncated = true;
        const toRemove = total - budget;
        const where = `row ${row}: `;
        if (strategy === 'longest_first') {
          if (b === null) {
            a = cut(a, budget);
          } else {
            // As the Rust `tokenizers` crate (transformers' fast tokenizers): keep the shorter part whole if the
            // longer one can take the rest, else split the budget in half, the odd token going to the longer
            // part (to the second text when they are equally long).
            const swap = a.length > b.length;
            let n1 = swap ? b.length : a.length;
            let n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
            if (n1 + n2 > budget) {
              n1 = Math.floor(budget / 2);
              n2 = n1 + (budget % 2);
            }
            const [keepA, keepB] = swap ? [n2, n1] : [n1, n2];
            a = cut(a, keepA);
            b = cut(b, keepB);
          }
        } else {
          const first = strategy === 'only_first';
          if (!first && b === null)
            throw new Error(`${where}truncation 'only_second' needs a text pair, got a single text`);
          const target = first ? a : (b as string[]);
          if (target.length <= toRemove) {
            throw new Error(
              `${where}truncation '${strategy}' cannot fit maxLength ${maxLength}: the ${first ? 'first' : 'second'} text has ${target.length} tokens and ${toRemove} must go ` +
                `(the other text has ${first ? (b?.length ?? 0) : a.length}, special tokens ${nSpecial}); use 'longest_first' or a larger maxLength`,
            );
          }
          if (first) a = cut(a, a.length - toRemove);
          else b = cut(b as string[], (b as string[]).length - toRemove);
        }
      }
    }
    const { tokens, typeIds } = this.postProcess(a, b, add);
    const ids = tokens.map((t) => {
      const id = this.tokenToId(t) ?? this.modelUnkId ?? this.unkId;
      if (id === undefined)
        throw new Error(`${this.source}: token "${t}" is not in the vocabulary and the tokenizer has no unk token`);
      return id;
    });
    return { ids, typeIds, tokens, truncated };
  }

  /** The post-processor's template applied to token strings, with type ids; a pair without a template is A then B, type ids 0 then 1. */
  private postProcess(a: string[], b: string[] | null, add: boolean): { tokens: string[]; typeIds: number[] } {
    let tokens = a;
    let rest = b;
    let types: number[] | undefined;
    for (const p of this.processors) {
      const out = p.post_process(tokens, rest, add);
      tokens = out.tokens;
      rest = out.tokens_pair ?? null;
      types = p.config?.type === 'RobertaProcessing' ? zeros(tokens.length) : out.token_type_ids;
    }
    types ??= zeros(tokens.length);
    if (rest !== null) {
      types = [...types, ...new Array<number>(rest.length).fill(1)];
      tokens = [...tokens, ...rest];
    }
    if (types.length !== tokens.length)
      throw new Error(`${this.source}: the post-processor gave ${tokens.length} tokens but ${types.length} type ids`);
    return { tokens, typeIds: types };
  }
}
