// Greedy generation for causal and seq2seq language models, streamed a token at a time, and exact match on a
// validation split. A chat continues the conversation written by its chat template and stops at the template's
// end-of-turn marker or eos (as ids, or as text when the tokenizer does not know the marker as one token). No
// key/value cache yet: each new token reruns the sequence so far, which is fine for short replies.
import type { HostTensor } from '../onnx/graph.js';
import type { BuiltModel } from '../models/types.js';
import type { TextTokenizer } from '../models/tokenizer.js';
import {
  encodeChatPrompt,
  stopRuleOf,
  type ChatMessage,
  type ChatTemplate,
  type StopRule,
} from '../models/chat-template.js';
import { openInline, type SessionHandle } from '../runtime/host.js';
import type { Example } from './collate.js';
import { withoutDropout } from './dropout.js';
import { exactMatch } from './metrics.js';

const ids = (rows: number[]): HostTensor => ({
  dtype: 'int64',
  shape: [1, rows.length],
  data: BigInt64Array.from(rows.map(BigInt)),
});
const ones = (n: number): HostTensor => ({ dtype: 'int64', shape: [1, n], data: new BigInt64Array(n).fill(1n) });

/** One step of a streamed generation: the reply so far, what is new in it, and (at the end) why it stopped. */
export interface GenerationStep {
  /** The reply so far, special tokens left out (and a stop marker, or the start of one, held back). */
  text: string;
  /** What this step added to `text`. */
  delta: string;
  /** Tokens generated so far. */
  tokens: number;
  /** Set on the last step: the end-of-turn marker or eos ('stop'), or maxNewTokens ('length'). */
  stopped?: 'stop' | 'length';
}

export class Generator {
  private constructor(
    private readonly model: BuiltModel,
    private readonly tok: TextTokenizer,
    private readonly session: SessionHandle,
    private readonly trainable: string[],
    private readonly chatTemplate?: ChatTemplate,
  ) {}

  /**
   * A logits-only session of the model; delta parameters (graph values in `trainable`) are fed at each call. A chat
   * template lets it continue conversations (and judge chat rows by exact match).
   */
  static async open(
    model: BuiltModel,
    tok: TextTokenizer,
    trainable: string[],
    device: 'auto' | 'cpu' | 'cuda' = 'cpu',
    chatTemplate?: ChatTemplate,
  ): Promise<Generator> {
    if (model.task !== 'causal-lm' && model.task !== 'seq2seq')
      throw new Error(`generation needs a language model (this one is ${model.task})`);
    const g = withoutDropout(model.graph);
    for (const v of trainable) if (g.initializers.has(v)) g.promoteToInput(v);
    g.outputs.length = 0;
    g.output('logits');
    g.prune();
    return new Generator(model, tok, await openInline(g, { device }), trainable, chatTemplate);
  }

  private feeds(params: Record<string, HostTensor>): Record<string, HostTensor> {
    const feeds: Record<string, HostTensor> = {};
    for (const v of this.trainable) if (params[v]) feeds[v] = params[v];
    return feeds;
  }

  /**
   * The greedy continuation of `prompt` (token ids) of a causal LM, a step per token: it stops at a stop id, a stop
   * text, or after maxNewTokens. The text a step shows never holds a stop marker or a broken character.
   */
  async *stream(
    prompt: number[],
    params: Record<string, HostTensor>,
    opts: { maxNewTokens: number; stop?: StopRule },
  ): AsyncGenerator<GenerationStep> {
    if (this.model.task !== 'causal-lm')
      throw new Error(`streaming needs a causal language model (this one is ${this.model.task})`);
    const feeds = this.feeds(params);
    const stopIds = new Set(opts.stop?.ids ?? (this.tok.eosId === undefined ? [] : [this.tok.eosId]));
    const stopText = (opts.stop?.strings ?? []).filter((x) => x.length > 0);
    const seq = [...prompt];
    const out: number[] = [];
    let shown = '';
    let stopped: GenerationStep['stopped'] = 'length';
    for (let i = 0; i < opts.maxNewTokens; i++) {
      const r = await this.session.run({ ...feeds, input_ids: ids(seq), attention_mask: ones(seq.length) });
      const next = argmaxLast(r.logits);
      if (stopIds.has(next)) {
        stopped = 'stop';
        break;
      }
      seq.push(next);
      out.push(next);
      // A stop marker the tokenizer spells in pieces is found in the text; the reply ends before it.
      const raw = this.tok.decode(out);
      const hit = Math.min(...stopText.map((x) => raw.indexOf(x)).filter((k) => k >= 0), Infinity);
      if (hit < Infinity) {
        while (out.length && this.tok.decode(out).length > hit) out.pop();
        stopped = 'stop';
        break;
      }
      const text = heldBack(this.tok.decode(out, true), stopText);
      if (text.length > shown.length && text.startsWith(shown)) {
        yield { text, delta: text.slice(shown.length), tokens: out.length };
        shown = text;
      }
    }
    const text = this.tok.decode(out, true);
    yield { text, delta: text.startsWith(shown) ? text.slice(shown.length) : '', tokens: out.length, stopped };
  }

  /**
   * The assistant's reply to a conversation (ending with the user's turn), written with the chat template (the one
   * the generator was opened with, unless another is given).
   */
  async *chat(
    messages: readonly ChatMessage[],
    params: Record<string, HostTensor>,
    maxNewTokens: number,
    template = this.chatTemplate,
  ): AsyncGenerator<GenerationStep> {
    const t = template;
    if (!t) throw new Error('chat needs a chat template');
    yield* this.stream(encodeChatPrompt(this.tok, t, messages), params, {
      maxNewTokens,
      stop: stopRuleOf(this.tok, t),
    });
  }

  /** The greedy continuation of `input` (a prompt, or a seq2seq source), as text. */
  async generate(input: string, params: Record<string, HostTensor>, maxNewTokens: number): Promise<string> {
    if (this.model.task === 'causal-lm') return last(this.stream(this.tok.encode(input).ids, params, { maxNewTokens }));
    const feeds = this.feeds(params);
    const eos = this.tok.eosId;
    const out: number[] = [];
    const src = this.tok.encode(input).ids;
    const start = Number(this.model.builder.folder.config.decoder_start_token_id ?? this.tok.padId);
    const dec = [start];
    for (let i = 0; i < maxNewTokens; i++) {
      const r = await this.session.run({
        ...feeds,
        input_ids: ids(src),
        attention_mask: ones(src.length),
        decoder_input_ids: ids(dec),
        decoder_attention_mask: ones(dec.length),
      });
      const next = argmaxLast(r.logits);
      if (next === eos) break;
      dec.push(next);
      out.push(next);
    }
    return this.tok.decode(out, true);
  }

  /** Exact match of greedy generations against the references of up to `limit` rows. */
  async exactMatch(rows: Example[], params: Record<string, HostTensor>, limit = 128): Promise<number> {
    const chats = this.chatTemplate ? rows.filter((r) => r.messages !== undefined).slice(0, limit) : [];
    const xs = rows
      .filter((r) =>
        this.model.task === 'causal-lm' ? r.prompt !== undefined && r.completion !== undefined : r.source !== undefined,
      )
      .slice(0, limit - chats.length);
    if (xs.length + chats.length === 0) return NaN;
    const preds: string[] = [],
      gold: string[] = [];
    // A chat row: the conversation up to its last reply, and that reply.
    for (const r of chats) {
      const messages = r.messages!;
      const target = messages[messages.length - 1].content;
      const budget = this.tok.encode(target, undefined, { addSpecialTokens: false }).ids.length + 4;
      preds.push(await last(this.chat(messages.slice(0, -1), params, budget)));
      gold.push(target);
    }
    for (const r of xs) {
      const target = (this.model.task === 'causal-lm' ? r.completion : r.target) ?? '';
      const budget = this.tok.encode(target, undefined, { addSpecialTokens: false }).ids.length + 4;
      preds.push(await this.generate((this.model.task === 'causal-lm' ? r.prompt : r.source)!, params, budget));
      gold.push(this.tok.decode(this.tok.encode(target, undefined, { addSpecialTokens: false }).ids, true));
    }
    return exactMatch(preds, gold);
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** The text of a generation's last step. */
async function last(steps: AsyncGenerator<GenerationStep>): Promise<string> {
  let text = '';
  for await (const step of steps) text = step.text;
  return text;
}

/**
 * `text` without what a stream must not show yet: a broken character at its end (a byte-level token that is half of
 * one), or an end that may be the start of a stop marker.
 */
function heldBack(text: string, stops: string[]): string {
  let end = text.length;
  while (end > 0 && text[end - 1] === '\uFFFD') end--;
  let cut = end;
  for (const s of stops)
    for (let k = Math.min(s.length - 1, end); k > 0; k--)
      if (text.endsWith(s.slice(0, k), end)) {
        cut = Math.min(cut, end - k);
        break;
      }
  return text.slice(0, cut);
}

function argmaxLast(logits: HostTensor): number {
  const [, S, V] = logits.shape;
  const d = logits.data as Float32Array;
  let k = 0;
  for (let v = 1; v < V; v++) if (d[(S - 1) * V + v] > d[(S - 1) * V + k]) k = v;
  return k;
}
