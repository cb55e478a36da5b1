// Turns examples into the tensors a model's graph reads, per task: classification and regression (text, pair,
// label), causal LM (prompt + completion, loss on the completion only; or plain text; or a conversation written with
// the chat template, loss on the assistant's turns only), seq2seq (source → target).
import { encodeChat, type ChatTemplate } from '../models/chat-template.js';
import type { HostTensor } from '../onnx/graph.js';
import type { BuiltModel } from '../models/types.js';
import type { TextTokenizer } from '../models/tokenizer.js';
import type { Example } from '../data/types.js';

export type { Example };

export interface Collator {
  /** Token count of each example (for length bucketing). */
  lengths(examples: Example[]): number[];
  batch(examples: Example[]): Record<string, HostTensor>;
}

const i64 = (rows: number[][], width: number, fill: number): HostTensor => ({
  dtype: 'int64',
  shape: [rows.length, width],
  data: BigInt64Array.from(rows.flatMap((r) => [...r, ...Array<number>(width - r.length).fill(fill)].map(BigInt))),
});

export function makeCollator(
  model: BuiltModel,
  tok: TextTokenizer,
  opts: { maxLength: number; targetMaxLength?: number; labels?: string[]; chat?: ChatTemplate },
): Collator {
  const c = collatorOf(model, tok, opts);
  if (!model.fusedAttention) return c;
  return {
    lengths: c.lengths,
    batch: (xs) => {
      const b = c.batch(xs);
      assertRightPadded(b.attention_mask);
      return b;
    },
  };
}

/** Fused attention reads no mask: every row must be its real tokens then padding, or real tokens would see padding. */
export function assertRightPadded(mask: HostTensor): void {
  const [rows, width] = mask.shape;
  const m = mask.data as BigInt64Array;
  for (let r = 0; r < rows; r++)
    for (let j = 1; j < width; j++)
      if (m[r * width + j] !== 0n && m[r * width + j - 1] === 0n)
        throw new Error(
          `batch row ${r}: attention_mask has a real token at position ${j} after padding; fused attention needs right-padded rows`,
        );
}

function collatorOf(
  model: BuiltModel,
  tok: TextTokenizer,
  opts: { maxLength: number; targetMaxLength?: number; labels?: string[]; chat?: ChatTemplate },
): Collator {
  const { maxLength } = opts;
  const needs = (n: string): boolean => model.inputs.includes(n);
  const need = (e: Example, k: keyof Example, i: number): string => {
    const v = e[k];
    if (typeof v !== 'string' || v.length === 0)
      throw new Error(`example ${i}: "${k}" is missing or empty (task ${model.task})`);
    return v;
  };
  if (model.task === 'classification' || model.task === 'regression') {
    const index = new Map((opts.labels ?? []).map((l, i) => [l, i]));
    if (model.task === 'classification' && index.size === 0)
      throw new Error('classification needs the label vocabulary');
    const enc = (xs: Example[]) =>
      xs[0]?.text_pair !== undefined
        ? tok.encodeBatch(
            xs.map((e, i) => [need(e, 'text', i), need(e, 'text_pair', i)] as [string, string]),
            { maxLength, padding: 'longest', paddingSide: 'right' },
          )
        : tok.encodeBatch(
            xs.map((e, i) => need(e, 'text', i)),
            { maxLength, padding: 'longest', paddingSide: 'right' },
          );
    return {
      lengths: (xs) => enc(xs).lengths,
      batch: (xs) => {
        const b = enc(xs);
        const out: Record<string, HostTensor> = { input_ids: b.input_ids, attention_mask: b.attention_mask };
        if (needs('token_type_ids')) out.token_type_ids = b.token_type_ids;
        if (model.task === 'regression') {
          out.labels = {
            dtype: 'float32',
            shape: [xs.length],
            data: Float32Array.from(xs, (e, i) => {
              const v = Number(e.label);
              if (e.label === undefined || e.label === '' || !Number.isFinite(v))
                throw new Error(`example ${i}: label ${JSON.stringify(e.label)} is not a number`);
              return v;
            }),
          };
        } else {
          out.labels = {
            dtype: 'int64',
            shape: [xs.length],
            data: BigInt64Array.from(xs, (e, i) => {
              const k = index.get(String(e.label));
              if (k === undefined)
                throw new Error(
                  `example ${i}: label ${JSON.stringify(e.label)} is not one of ${opts.labels!.join(', ')}`,
                );
              return BigInt(k);
            }),
          };
        }
        return out;
      },
    };
  }
  if (model.task === 'causal-lm') {
    const encode = (e: Example, i: number): { ids: number[]; labels: number[] } => {
      let ids: number[], labels: number[];
      if (e.messages !== undefined) {
        if (!opts.chat) throw new Error(`example ${i}: a conversation needs the chat template to be written with`);
        const c = encodeChat(tok, opts.chat, e.messages, maxLength);
        return { ids: c.ids, labels: c.ids.map((id, k) => (c.assistant[k] ? id : -100)) }; // the assistant's only
      }
      if (e.prompt !== undefined || e.completion !== undefined) {
        const p = tok.encode(need(e, 'prompt', i)).ids;
        const c = [
          ...tok.encode(need(e, 'completion', i), undefined, { addSpecialTokens: false }).ids,
          ...(tok.eosId !== undefined ? [tok.eosId] : []),
        ];
        ids = [...p, ...c];
        labels = [...p.map(() => -100), ...c]; // loss on the completion only
      } else {
        ids = tok.encode(need(e, 'text', i)).ids;
        labels = [...ids];
      }
      return { ids: ids.slice(0, maxLength), labels: labels.slice(0, maxLength) };
    };
    return {
      lengths: (xs) => xs.map((e, i) => encode(e, i).ids.length),
      batch: (xs) => {
        const rows = xs.map((e, i) => encode(e, i));
        const S = Math.max(...rows.map((r) => r.ids.length));
        return {
          input_ids: i64(
            rows.map((r) => r.ids),
            S,
            tok.padId < 0 ? 0 : tok.padId,
          ),
          attention_mask: i64(
            rows.map((r) => r.ids.map(() => 1)),
            S,
            0,
          ),
          labels: i64(
            rows.map((r) => r.labels),
            S,
            -100,
          ),
        };
      },
    };
  }
  // seq2seq: the decoder reads the target shifted right behind the start token (T5 starts with the pad token).
  const tMax = opts.targetMaxLength ?? maxLength;
  const start = Number(model.builder.folder.config.decoder_start_token_id ?? tok.padId);
  return {
    lengths: (xs) => xs.map((e, i) => tok.encode(need(e, 'source', i), undefined, { maxLength }).ids.length),
    batch: (xs) => {
      const src = tok.encodeBatch(
        xs.map((e, i) => need(e, 'source', i)),
        { maxLength, padding: 'longest', paddingSide: 'right' },
      );
      const tgt = xs.map((e, i) => tok.encode(need(e, 'target', i), undefined, { maxLength: tMax }).ids);
      const T = Math.max(...tgt.map((t) => t.length));
      return {
        input_ids: src.input_ids,
        attention_mask: src.attention_mask,
        decoder_input_ids: i64(
          tgt.map((t) => [start, ...t.slice(0, -1)]),
          T,
          tok.padId,
        ),
        decoder_attention_mask: i64(
          tgt.map((t) => t.map(() => 1)),
          T,
          0,
        ),
        labels: i64(tgt, T, -100),
      };
    },
  };
}
