// Greedy generation for causal and seq2seq language models, and exact match on a validation split. No key/value
// cache yet: each new token reruns the sequence so far, which is fine for the short completions of evaluation.
import type { HostTensor } from '../onnx/graph.js';
import type { BuiltModel } from '../models/types.js';
import type { TextTokenizer } from '../models/tokenizer.js';
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

export class Generator {
  private constructor(
    private readonly model: BuiltModel,
    private readonly tok: TextTokenizer,
    private readonly session: SessionHandle,
    private readonly trainable: string[],
  ) {}

  /** A logits-only session of the model; delta parameters (graph values in `trainable`) are fed at each call. */
  static async open(
    model: BuiltModel,
    tok: TextTokenizer,
    trainable: string[],
    device: 'auto' | 'cpu' | 'cuda' = 'cpu',
  ): Promise<Generator> {
    if (model.task !== 'causal-lm' && model.task !== 'seq2seq')
      throw new Error(`generation needs a language model (this one is ${model.task})`);
    const g = withoutDropout(model.graph);
    for (const v of trainable) if (g.initializers.has(v)) g.promoteToInput(v);
    g.outputs.length = 0;
    g.output('logits');
    g.prune();
    return new Generator(model, tok, await openInline(g, { device }), trainable);
  }

  /** The greedy continuation of `input` (a prompt, or a seq2seq source), as text. */
  async generate(input: string, params: Record<string, HostTensor>, maxNewTokens: number): Promise<string> {
    const feeds: Record<string, HostTensor> = {};
    for (const v of this.trainable) if (params[v]) feeds[v] = params[v];
    const eos = this.tok.eosId;
    const out: number[] = [];
    if (this.model.task === 'causal-lm') {
      const seq = [...this.tok.encode(input).ids];
      for (let i = 0; i < maxNewTokens; i++) {
        const r = await this.session.run({ ...feeds, input_ids: ids(seq), attention_mask: ones(seq.length) });
        const next = argmaxLast(r.logits);
        if (next === eos) break;
        seq.push(next);
        out.push(next);
      }
    } else {
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
    }
    return this.tok.decode(out, true);
  }

  /** Exact match of greedy generations against the references of up to `limit` rows. */
  async exactMatch(rows: Example[], params: Record<string, HostTensor>, limit = 128): Promise<number> {
    const xs = rows
      .filter((r) =>
        this.model.task === 'causal-lm' ? r.prompt !== undefined && r.completion !== undefined : r.source !== undefined,
      )
      .slice(0, limit);
    if (xs.length === 0) return NaN;
    const preds: string[] = [],
      gold: string[] = [];
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

function argmaxLast(logits: HostTensor): number {
  const [, S, V] = logits.shape;
  const d = logits.data as Float32Array;
  let k = 0;
  for (let v = 1; v < V; v++) if (d[(S - 1) * V + v] > d[(S - 1) * V + k]) k = v;
  return k;
}
