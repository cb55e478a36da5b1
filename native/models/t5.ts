// T5 encoder-decoder: RMS-style layer norm without bias, relative position buckets (bidirectional in the encoder,
// causal in the decoder) computed once per stack in its first block, no 1/√d attention scaling, ReLU or gated-GELU
// FFN, and the tied head's d_model^−0.5 rescale — as transformers' modeling_t5.
import { ModelBuilder } from './builder.js';
import type { ConfigReader, ModelFolder } from './folder.js';
import type { Architecture, BuiltModel, ModelOptions, Task } from './types.js';
import type { Value } from '../onnx/graph.js';

/** transformers' _relative_position_bucket, in graph ops on int64 relative positions (key − query). */
export function relativePositionBucket(
  b: ModelBuilder,
  rel: Value,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): Value {
  const g = b.g;
  const i = (v: number): Value => g.constant(v, 'int64', []);
  let nb = numBuckets;
  let out: Value = g.op1('Mul', [rel, i(0)]);
  let r: Value;
  if (bidirectional) {
    nb = Math.floor(nb / 2);
    out = g.op1('Mul', [g.op1('Cast', [g.op1('Greater', [rel, i(0)])], { to: 7 }), i(nb)]);
    r = g.op1('Abs', [rel]);
  } else {
    r = g.op1('Neg', [g.op1('Min', [rel, i(0)])]);
  }
  const maxExact = Math.floor(nb / 2);
  const isSmall = g.op1('Less', [r, i(maxExact)]);
  // log(r / max_exact) / log(max_distance / max_exact) · (nb − max_exact), in float32, truncated like .to(long).
  const rf = g.op1('Cast', [g.op1('Max', [r, i(1)])], { to: 1 });
  const scaled = g.op1('Mul', [
    g.op1('Div', [
      g.op1('Log', [g.op1('Div', [rf, g.constant(maxExact, 'float32', [])])]),
      g.constant(Math.fround(Math.log(maxDistance / maxExact)), 'float32', []),
    ]),
    g.constant(nb - maxExact, 'float32', []),
  ]);
  const large = g.op1('Min', [g.op1('Add', [g.op1('Cast', [scaled], { to: 7 }), i(maxExact)]), i(nb - 1)]);
  return g.op1('Add', [out, g.op1('Where', [isSmall, r, large])]);
}

export function buildT5(folder: ModelFolder, cfg: ConfigReader, opts: { task: Task } & ModelOptions): BuiltModel {
  if (opts.task !== 'seq2seq')
    throw new Error(`${folder.dir}: T5 models support the seq2seq task here (asked: ${opts.task})`);
  const b = new ModelBuilder(folder, 42, opts.weights, opts.build, opts.precision);
  const g = b.g;
  const D = cfg.num('d_model'),
    dkv = cfg.num('d_kv'),
    H = cfg.num('num_heads'),
    F = cfg.num('d_ff'),
    V = cfg.num('vocab_size');
  const Le = cfg.num('num_layers'),
    Ld = cfg.num('num_decoder_layers', Le);
  const eps = cfg.num('layer_norm_epsilon', 1e-6);
  const nBuckets = cfg.num('relative_attention_num_buckets', 32),
    maxDist = cfg.num('relative_attention_max_distance', 128);
  const ffProj = cfg.str('feed_forward_proj', 'relu');
  const gated = ffProj.startsWith('gated-');
  // transformers maps "gated-gelu" to gelu_new (the tanh form), as T5 v1.1 was trained.
  const actName = ffProj === 'gated-gelu' ? 'gelu_new' : gated ? ffProj.slice(6) : ffProj;
  if (!['relu', 'gelu', 'gelu_new'].includes(actName))
    throw new Error(`${folder.dir}: feed_forward_proj "${ffProj}" is not supported (relu, gated-gelu)`);
  const tied = cfg.bool('tie_word_embeddings', true);
  const inner = H * dkv;

  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask0 = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const dIds = g.input('decoder_input_ids', 'int64', ['batch', 'target']);
  const dMask = g.input('decoder_attention_mask', 'int64', ['batch', 'target']);
  const shared = b.matrix('shared.weight', [V, D]);
  const embed = (t: Value): Value => {
    const e = g.op1('Gather', [shared, t], { axis: 0 });
    return shared.dtype === 'float16' ? g.op1('Cast', [e], { to: 1 }) : e;
  };
  b.record({
    name: 'shared',
    type: 'Embedding',
    params: [{ name: 'shared.weight', shape: [V, D], dtype: folder.weights.get('shared.weight')!.dtype }],
    in: V,
    out: D,
  });

  const act = (x: Value): Value =>
    actName === 'relu'
      ? g.op1('Relu', [x])
      : actName === 'gelu'
        ? g.op1('Gelu', [x])
        : g.op1('Gelu', [x], { approximate: 'tanh' });
  const ffn = (p: string, x: Value): Value => {
    const n = b.rmsNorm(`${p}.layer_norm`, x, D, eps);
    const h = gated
      ? g.op1('Mul', [
          act(b.linear(`${p}.DenseReluDense.wi_0`, n, D, F, false)),
          b.linear(`${p}.DenseReluDense.wi_1`, n, D, F, false),
        ])
      : act(b.linear(`${p}.DenseReluDense.wi`, n, D, F, false));
    const out = b.linear(`${p}.DenseReluDense.wo`, h, F, D, false);
    b.record({
      name: `${p}.DenseReluDense`,
      type: 'FeedForward',
      params: [],
      input: n.name,
      output: out.name,
      in: D,
      out: D,
    });
    return g.op1('Add', [x, out]);
  };
  const attention = (p: string, xq: Value, xkv: Value, bias: Value, self = true): Value => {
    const q = b.splitHeads(b.linear(`${p}.q`, xq, D, inner, false), H, dkv);
    let k = b.splitHeads(b.linear(`${p}.k`, xkv, D, inner, false), H, dkv);
    let v = b.splitHeads(b.linear(`${p}.v`, xkv, D, inner, false), H, dkv);
    if (self) ({ k, v } = b.withPrefix(k, v, xq));
    const out = b.linear(`${p}.o`, b.mergeHeads(b.attend(q, k, v, bias, 1), inner), inner, D, false); // no 1/√d in T5
    b.record({ name: p, type: 'Attention', params: [], input: xq.name, output: out.name, in: D, out: D });
    return out;
  };
  /** Relative position bias [1, H, q, k] from the stack's first block's table. */
  const positionBias = (stack: string, qLike: Value, kLike: Value, bidirectional: boolean): Value => {
    const name = `${stack}.block.0.layer.0.SelfAttention.relative_attention_bias`;
    const table = b.weight(`${name}.weight`, [nBuckets, H]);
    b.record({
      name,
      type: 'Embedding',
      params: [{ name: `${name}.weight`, shape: [nBuckets, H], dtype: folder.weights.get(`${name}.weight`)!.dtype }],
      in: nBuckets,
      out: H,
    });
    // With prefix tuning the prefix keys hold positions 0…P−1 and the real tokens follow.
    const P = b.prefixTokens;
    const qPos = P ? g.op1('Add', [b.arange(qLike), g.constant(P, 'int64', [])]) : b.arange(qLike);
    const kPos = P ? b.arange(g.op1('Concat', [b.onesLike(kLike, P, 1), kLike], { axis: 1 })) : b.arange(kLike);
    const qi = g.op1('Unsqueeze', [qPos, b.i64([1])]);
    const ki = g.op1('Unsqueeze', [kPos, b.i64([0])]);
    const rel = g.op1('Sub', [ki, qi]);
    const vals = g.op1('Gather', [table, relativePositionBucket(b, rel, bidirectional, nBuckets, maxDist)], {
      axis: 0,
    }); // [q, k, H]
    return g.op1('Unsqueeze', [g.op1('Transpose', [vals], { perm: [2, 0, 1] }), b.i64([0])]);
  };

  // Encoder.
  // A soft prompt goes before the encoder's tokens; its mask also governs the decoder's cross-attention.
  const prompted = b.prependPrompt(embed(ids), mask0, D);
  const mask = prompted.mask;
  let x = prompted.emb;
  b.initPrefix(Le + Ld, H, dkv, D);
  const encBias = g.op1('Add', [positionBias('encoder', mask, mask, true), b.prefixBias(b.attentionBias(mask, false))]);
  for (let l = 0; l < Le; l++) {
    const p = `encoder.block.${l}`;
    x = g.scope(p, () => {
      const n0 = b.rmsNorm(`${p}.layer.0.layer_norm`, x, D, eps);
      const a = g.op1('Add', [x, attention(`${p}.layer.0.SelfAttention`, n0, n0, encBias)]);
      return ffn(`${p}.layer.1`, a);
    });
  }
  const enc = b.rmsNorm('encoder.final_layer_norm', x, D, eps);

  // Decoder.
  let y = embed(dIds);
  const selfBias = g.op1('Add', [
    positionBias('decoder', dIds, dIds, false),
    b.prefixBias(b.attentionBias(dMask, true)),
  ]);
  const crossBias = b.attentionBias(mask, false);
  for (let l = 0; l < Ld; l++) {
    const p = `decoder.block.${l}`;
    y = g.scope(p, () => {
      const n0 = b.rmsNorm(`${p}.layer.0.layer_norm`, y, D, eps);
      const a = g.op1('Add', [y, attention(`${p}.layer.0.SelfAttention`, n0, n0, selfBias)]);
      const c = g.op1('Add', [
        a,
        attention(
          `${p}.layer.1.EncDecAttention`,
          b.rmsNorm(`${p}.layer.1.layer_norm`, a, D, eps),
          enc,
          crossBias,
          false,
        ),
      ]);
      return ffn(`${p}.layer.2`, c);
    });
  }
  let out = b.rmsNorm('decoder.final_layer_norm', y, D, eps);
  let head: Value;
  if (tied) {
    out = g.op1('Mul', [out, b.f32(D ** -0.5)]); // tied embeddings: rescale before projecting onto the vocabulary
    head = shared;
  } else {
    head = b.matrix('lm_head.weight', [V, D]);
  }
  const logits = g.op1('Identity', [b.product(out, head, true)], {}, { names: ['logits'] });
  b.record({
    name: 'lm_head',
    type: 'Linear',
    params: tied ? [] : [{ name: 'lm_head.weight', shape: [V, D], dtype: folder.weights.get('lm_head.weight')!.dtype }],
    input: out.name,
    output: logits.name,
    in: D,
    out: V,
  });
  g.output(logits);
  const loss = b.crossEntropy(logits, g.input('labels', 'int64', ['batch', 'target']), V);
  g.output(loss);
  return {
    architecture: 'T5ForConditionalGeneration',
    modelType: 't5',
    task: opts.task,
    graph: g,
    inputs: ['input_ids', 'attention_mask', 'decoder_input_ids', 'decoder_attention_mask', 'labels'],
    logits: 'logits',
    loss: loss.name,
    modules: b.modules,
    created: b.created,
    builder: b,
    dims: { hidden: D, layers: Le + Ld, heads: H, vocab: V },
  };
}

export const T5: Architecture = {
  modelTypes: ['t5'],
  defaultTask: 'seq2seq',
  tasks: ['seq2seq'],
  layerKeys: ['num_layers', 'num_decoder_layers'],
  build: buildT5,
};
