// Building blocks shared by the architectures: weights by Hugging Face name (checked against the shapes the
// architecture expects), modules recorded with their names, types, parameters and graph values, and masks.
import { DTYPES, toFloat16Bits, toFloat32, type DType } from '../onnx/dtype.js';
import { readTensorBytes } from '../onnx/safetensors.js';
import { Graph, type HostTensor, type Value } from '../onnx/graph.js';
import { fmtShape, type Dim } from '../onnx/shape.js';
import { Rng } from '../rng.js';
import type { ModelFolder } from './folder.js';

/** Deltas that change how the graph is built rather than a module's output (see native/delta). */
export interface BuildDeltas {
  /** Soft prompt: this many virtual tokens prepended to the (encoder) input embeddings. */
  softPromptTokens?: number;
  /** Prefix tuning: this many key/value prefix tokens in every self-attention, from an MLP of this width. */
  prefix?: { tokens: number; hidden: number };
}

export interface ModuleParam {
  name: string;
  shape: number[];
  dtype: DType;
}

export interface ModuleRecord {
  /** Hugging Face module name, e.g. bert.encoder.layer.0.attention.self.query. */
  name: string;
  /** Linear, Conv1D, Embedding, LayerNorm, RMSNorm, Attention, MLP, Head, … */
  type: string;
  params: ModuleParam[];
  /** The graph value the module reads and the one it produces (delta methods attach here). */
  input?: string;
  output?: string;
  in?: number;
  out?: number;
  /** The node that reads `input` (a delta that scales this module's input rewires only this node). */
  entry?: string;
}

/** The most negative float32, as transformers masks attention with torch.finfo(float32).min. */
export const MASK_MIN = -3.4028234663852886e38;

export class ModelBuilder {
  readonly g = new Graph();
  readonly modules: ModuleRecord[] = [];
  /** The float32 value each weight is used as (after an upcast for fp16/bf16 weights). */
  readonly weightValues = new Map<string, Value>();
  /** Weights the folder does not have (a new task head), initialised here as transformers would. */
  readonly created: Record<string, HostTensor> = {};
  private readonly rng: Rng;

  /** Parameters that build-time deltas (a soft prompt) created, by name. */
  readonly deltaWeights = new Map<string, Value>();

  /** Mixed precision: frozen matrices in float16, multiplied in float16. */
  readonly half: boolean;

  constructor(
    readonly folder: ModelFolder,
    seed = 42,
    private readonly overrides: Record<string, HostTensor> = {},
    readonly build: BuildDeltas = {},
    precision: 'float32' | 'float16' = 'float32',
  ) {
    this.rng = new Rng(seed);
    this.half = precision === 'float16';
  }

  /** A frozen matrix for products: float32 normally; float16 in mixed precision (converted once, if stored wider). */
  matrix(name: string, shape: number[]): Value {
    if (!this.half || this.overrides[name]) return this.weight(name, shape);
    const hit = this.weightValues.get(name);
    if (hit) return hit;
    const ref = this.folder.weights.get(name);
    if (!ref) return this.weight(name, shape); // reports the missing tensor
    this.weight(name, shape); // checks shape and dtype
    this.weightValues.delete(name);
    // The float32 upcast weight() added is not wanted here.
    const upcast = this.g.nodes.findIndex((n) => n.outputs[0] === `${name}::float32`);
    if (upcast >= 0) {
      this.g.nodes.splice(upcast, 1);
      this.g.values.delete(`${name}::float32`);
    }
    let v: Value;
    if (ref.dtype === 'float16') v = this.g.value(name);
    else {
      const bits = toFloat16Bits(toFloat32(ref.dtype, readTensorBytes(ref)));
      this.g.initializers.delete(name);
      this.g.values.delete(name);
      v = this.g.initializer(name, { dtype: 'float16', shape, data: bits });
    }
    this.weightValues.set(name, v);
    return v;
  }

  /** x·Wᵀ (transB) or x·W for a frozen matrix, in float16 under mixed precision; float32 in and out. */
  product(x: Value, w: Value, transB: boolean): Value {
    const g = this.g;
    if (w.dtype !== 'float16') return transB ? g.op1('FusedMatMul', [x, w], { transB: 1 }) : g.op1('MatMul', [x, w]);
    const x16 = g.op1('Cast', [x], { to: DTYPES.float16.onnx });
    const y16 = transB ? g.op1('FusedMatMul', [x16, w], { transB: 1 }) : g.op1('MatMul', [x16, w]);
    return g.op1('Cast', [y16], { to: DTYPES.float32.onnx });
  }

  private prefixKv?: Value;
  private prefixLayer = 0;

  /** Prefix tokens in every self-attention (0 without prefix tuning). */
  get prefixTokens(): number {
    return this.build.prefix?.tokens ?? 0;
  }

  /**
   * Prefix tuning (PEFT, with the reparameterisation MLP): kv = W2·tanh(W1·E + b1) + b2 for P prefix embeddings E,
   * split into a key and a value prefix [kvHeads, P, dh] for each of `layers` self-attentions, in build order.
   */
  initPrefix(layers: number, kvHeads: number, dh: number, D: number): void {
    const pre = this.build.prefix;
    if (!pre) return;
    const g = this.g,
      P = pre.tokens,
      Hd = pre.hidden,
      N = layers * 2 * kvHeads * dh;
    const param = (name: string, shape: number[]): Value => {
      const v = g.initializer(name, {
        dtype: 'float32',
        shape,
        data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
      });
      this.deltaWeights.set(name, v);
      return v;
    };
    if (Hd === 0) {
      // Without the reparameterisation, the prefixes themselves are the parameters (what a trained plugin stores).
      this.prefixKv = param('prefix.key_values', [layers, 2, kvHeads, P, dh]);
    } else {
      const E = param('prefix.embedding', [P, D]);
      const h = g.op1('Tanh', [
        g.op1('Add', [
          g.op1('FusedMatMul', [E, param('prefix.mlp.0.weight', [Hd, D])], { transB: 1 }),
          param('prefix.mlp.0.bias', [Hd]),
        ]),
      ]);
      const kv = g.op1('Add', [
        g.op1('FusedMatMul', [h, param('prefix.mlp.2.weight', [N, Hd])], { transB: 1 }),
        param('prefix.mlp.2.bias', [N]),
      ]);
      // [P, layers, 2, kvHeads, dh] → [layers, 2, kvHeads, P, dh]
      this.prefixKv = g.op1('Transpose', [g.op1('Reshape', [kv, this.i64([P, layers, 2, kvHeads, dh])])], {
        perm: [1, 2, 3, 0, 4],
      });
    }
    this.record({ name: 'prefix', type: 'Prefix', params: [], output: this.prefixKv.name, in: P, out: N });
  }

  /** Keys and values [batch, kvHeads, S, dh] with the next layer's prefix in front (unchanged without prefix tuning). */
  withPrefix(k: Value, v: Value, batchLike: Value): { k: Value; v: Value } {
    if (!this.prefixKv) return { k, v };
    const g = this.g,
      l = this.prefixLayer++;
    const layer = g.op1('Gather', [this.prefixKv, g.constant(l, 'int64', [])], { axis: 0 }); // [2, kvH, P, dh]
    const [, , kvH, P, dh] = this.prefixKv.shape as number[];
    const shape = g.op1('Concat', [g.op1('Shape', [batchLike], { start: 0, end: 1 }), this.i64([kvH, P, dh])], {
      axis: 0,
    });
    const part = (i: number, t: Value): Value => {
      const pre = g.op1('Gather', [layer, g.constant(i, 'int64', [])], { axis: 0 });
      const tiled = g.op1(
        'Expand',
        [g.op1('Unsqueeze', [pre, this.i64([0])]), shape],
        {},
        { infos: [{ dtype: 'float32', shape: [batchLike.shape[0], kvH, P, dh] }] },
      );
      return g.op1('Concat', [tiled, t], { axis: 2 });
    };
    return { k: part(0, k), v: part(1, v) };
  }

  /** An attention bias over real keys [..., S] widened with zeros for the prefix keys [..., P + S]. */
  prefixBias(bias: Value): Value {
    const P = this.prefixTokens;
    if (!P) return bias;
    return this.g.op1('Pad', [bias, this.i64([P, 0]), this.g.constant(0, 'float32', []), this.i64([3])]);
  }

  /** Absolute position tables leave room for at most `max` positions: prefixes and prompts take some of them. */
  checkPositions(max: number, family: string): void {
    const used = this.prefixTokens + this.promptTokens;
    if (used >= max) {
      throw new Error(
        `${this.prefixTokens ? `prefix (${this.prefixTokens} tokens)` : ''}${this.prefixTokens && this.promptTokens ? ' and ' : ''}${this.promptTokens ? `soft_prompt (${this.promptTokens} tokens)` : ''} leave no room for text in ${family}'s ${max} absolute positions`,
      );
    }
  }

  get promptTokens(): number {
    return this.build.softPromptTokens ?? 0;
  }

  /**
   * Prepends the soft prompt's virtual tokens to token embeddings [batch, seq, D] and ones to the mask, as PEFT's
   * prompt tuning does with inputs_embeds. Without a soft prompt, returns both unchanged.
   */
  prependPrompt(emb: Value, mask: Value, D: number): { emb: Value; mask: Value } {
    const P = this.promptTokens;
    if (!P) return { emb, mask };
    const g = this.g;
    const prompt = this.g.initializer('soft_prompt.embedding', {
      dtype: 'float32',
      shape: [P, D],
      data: new Float32Array(P * D),
    });
    this.deltaWeights.set('soft_prompt.embedding', prompt);
    this.record({ name: 'soft_prompt', type: 'SoftPrompt', params: [], output: prompt.name, in: P, out: D });
    const batch = g.op1('Shape', [mask], { start: 0, end: 1 });
    const shape = g.op1('Concat', [batch, this.i64([P, D])], { axis: 0 });
    const tiled = g.op1(
      'Expand',
      [g.op1('Unsqueeze', [prompt, this.i64([0])]), shape],
      {},
      { infos: [{ dtype: 'float32', shape: [mask.shape[0], P, D] }] },
    );
    const ones = this.onesLike(mask, P, 1);
    return { emb: g.op1('Concat', [tiled, emb], { axis: 1 }), mask: g.op1('Concat', [ones, mask], { axis: 1 }) };
  }

  /** An int64 [batch, n] tensor of `value`, batch taken from `like`. */
  onesLike(like: Value, n: number, value: number): Value {
    const g = this.g;
    const shape = g.op1('Concat', [g.op1('Shape', [like], { start: 0, end: 1 }), this.i64([n])], { axis: 0 });
    return g.op1(
      'ConstantOfShape',
      [shape],
      { value: { dtype: 'int64', shape: [1], data: BigInt64Array.of(BigInt(value)) } },
      { infos: [{ dtype: 'int64', shape: [like.shape[0], n] }] },
    );
  }

  /** Labels for a prompted causal LM: −100 (ignored) on the virtual positions. */
  promptLabels(labels: Value): Value {
    const P = this.promptTokens;
    return P ? this.g.op1('Concat', [this.onesLike(labels, P, -100), labels], { axis: 1 }) : labels;
  }

  /** Logits of the real positions only (the virtual tokens' are dropped). */
  realPositions(logits: Value): Value {
    const P = this.promptTokens;
    return P ? this.g.op1('Slice', [logits, this.i64([P]), this.i64([2 ** 62]), this.i64([1])]) : logits;
  }

  has(name: string): boolean {
    return this.folder.weights.has(name);
  }

  /** A weight of the folder, which must have exactly `shape`; used as float32. */
  weight(name: string, shape: number[]): Value {
    const hit = this.weightValues.get(name);
    if (hit) return hit;
    const ref = this.folder.weights.get(name);
    if (!ref) {
      const pre = this.folder.addedPrefix;
      const saved = pre && name.startsWith(pre) ? `; the checkpoint names its backbone without "${pre}"` : '';
      throw new Error(
        `${this.folder.dir}: tensor "${name}" is missing (the architecture needs it with shape ${fmtShape(shape)}${saved})`,
      );
    }
    if (ref.shape.length !== shape.length || ref.shape.some((d, i) => d !== shape[i])) {
      throw new Error(
        `${ref.file}: tensor "${name}" has shape ${fmtShape(ref.shape)}, the architecture expects ${fmtShape(shape)}`,
      );
    }
    if (!['float32', 'float16', 'bfloat16'].includes(ref.dtype))
      throw new Error(`${ref.file}: tensor "${name}" is ${ref.dtype}; weights must be float32, float16 or bfloat16`);
    const over = this.overrides[name];
    if (over) {
      // A weight replaced in memory (e.g. with a delta merged into it), float32.
      const v = this.g.initializer(name, over, { dtype: 'float32', shape });
      this.weightValues.set(name, v);
      return v;
    }
    const raw = this.g.initializer(name, ref);
    const v =
      ref.dtype === 'float32'
        ? raw
        : this.g.op1('Cast', [raw], { to: DTYPES.float32.onnx }, { names: [`${name}::float32`] });
    this.weightValues.set(name, v);
    return v;
  }

  /** A weight the folder lacks (a new head): normal(0, std) like transformers' _init_weights, or zeros. */
  createWeight(name: string, shape: number[], init: { normal: number } | 'zeros' | 'ones'): Value {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (init === 'ones') data.fill(1);
    else if (init !== 'zeros') for (let i = 0; i < n; i++) data[i] = init.normal * this.rng.normal();
    const t: HostTensor = { dtype: 'float32', shape, data };
    this.created[name] = t;
    const v = this.g.initializer(name, t);
    this.weightValues.set(name, v);
    return v;
  }

  /**
   * A task head's weight: the folder's when present with this shape, else a new one — also when the folder's head
   * has another size (another number of labels), as transformers' ignore_mismatched_sizes does.
   */
  weightOrNew(name: string, shape: number[], init: { normal: number } | 'zeros' | 'ones'): Value {
    const ref = this.folder.weights.get(name);
    const fits = ref && ref.shape.length === shape.length && ref.shape.every((d, i) => d === shape[i]);
    return fits ? this.weight(name, shape) : this.createWeight(name, shape, init);
  }

  record(m: ModuleRecord): void {
    this.modules.push(m);
  }

  private param(name: string, shape: number[]): ModuleParam {
    return { name, shape, dtype: this.folder.weights.get(name)?.dtype ?? 'float32' };
  }

  /** nn.Linear: weight [out, in], y = x·Wᵀ + b (the transpose folded into the product). */
  linear(
    name: string,
    x: Value,
    inF: number,
    outF: number,
    bias: boolean,
    opts: { create?: { normal: number } } = {},
  ): Value {
    return this.g.scope(name, () => {
      const get = (n: string, s: number[], init: { normal: number } | 'zeros'): Value =>
        opts.create ? this.weightOrNew(n, s, init) : this.weight(n, s);
      const w = opts.create
        ? get(`${name}.weight`, [outF, inF], opts.create)
        : this.matrix(`${name}.weight`, [outF, inF]);
      const before = this.g.nodes.length;
      let y = this.product(x, w, true);
      const entry = this.g.nodes[before].name;
      if (bias) y = this.g.op1('Add', [y, get(`${name}.bias`, [outF], 'zeros')]);
      const params = [this.param(`${name}.weight`, [outF, inF]), ...(bias ? [this.param(`${name}.bias`, [outF])] : [])];
      this.record({ name, type: 'Linear', params, input: x.name, output: y.name, in: inF, out: outF, entry });
      return y;
    });
  }

  /** GPT-2's Conv1D: weight [in, out], y = x·W + b. */
  conv1d(name: string, x: Value, inF: number, outF: number): Value {
    return this.g.scope(name, () => {
      const w = this.matrix(`${name}.weight`, [inF, outF]);
      const before = this.g.nodes.length;
      const mm = this.product(x, w, false);
      const entry = this.g.nodes[before].name;
      const y = this.g.op1('Add', [mm, this.weight(`${name}.bias`, [outF])]);
      this.record({
        name,
        type: 'Conv1D',
        params: [this.param(`${name}.weight`, [inF, outF]), this.param(`${name}.bias`, [outF])],
        input: x.name,
        output: y.name,
        in: inF,
        out: outF,
        entry,
      });
      return y;
    });
  }

  embedding(name: string, ids: Value, rows: number, dim: number): Value {
    const w = this.matrix(`${name}.weight`, [rows, dim]);
    let y = this.g.op1('Gather', [w, ids], { axis: 0 });
    if (w.dtype === 'float16') y = this.g.op1('Cast', [y], { to: DTYPES.float32.onnx });
    this.record({
      name,
      type: 'Embedding',
      params: [this.param(`${name}.weight`, [rows, dim])],
      input: ids.name,
      output: y.name,
      in: rows,
      out: dim,
    });
    return y;
  }

  layerNorm(name: string, x: Value, dim: number, eps: number): Value {
    const y = this.g.op1(
      'LayerNormalization',
      [x, this.weight(`${name}.weight`, [dim]), this.weight(`${name}.bias`, [dim])],
      { axis: -1, epsilon: eps },
    );
    this.record({
      name,
      type: 'LayerNorm',
      params: [this.param(`${name}.weight`, [dim]), this.param(`${name}.bias`, [dim])],
      input: x.name,
      output: y.name,
      in: dim,
      out: dim,
    });
    return y;
  }

  /** RMSNorm (Llama, T5): x / sqrt(mean(x²) + eps) · weight, statistics in float32. */
  rmsNorm(name: string, x: Value, dim: number, eps: number): Value {
    const y = this.g.op1('SimplifiedLayerNormalization', [x, this.weight(`${name}.weight`, [dim])], {
      axis: -1,
      epsilon: eps,
    });
    this.record({
      name,
      type: 'RMSNorm',
      params: [this.param(`${name}.weight`, [dim])],
      input: x.name,
      output: y.name,
      in: dim,
      out: dim,
    });
    return y;
  }

  // ---- shapes and masks ----

  i64(v: number[]): Value {
    return this.g.constant(v, 'int64', [v.length]);
  }

  f32(v: number): Value {
    return this.g.constant(v, 'float32', []);
  }

  /** [batch, seq, heads·dh] → [batch, heads, seq, dh]. */
  splitHeads(x: Value, heads: number, dh: number): Value {
    return this.g.op1('Transpose', [this.g.op1('Reshape', [x, this.i64([0, 0, heads, dh])])], { perm: [0, 2, 1, 3] });
  }

  /** [batch, heads, seq, dh] → [batch, seq, heads·dh]. */
  mergeHeads(x: Value, width: number): Value {
    return this.g.op1('Reshape', [this.g.op1('Transpose', [x], { perm: [0, 2, 1, 3] }), this.i64([0, 0, width])]);
  }

  /** 0, 1, …, seq−1 for the second axis of `like` ([batch, seq]). */
  arange(like: Value): Value {
    const n = this.g.op1('Squeeze', [this.g.op1('Shape', [like], { start: 1, end: 2 }), this.i64([0])]);
    return this.g.op1(
      'Range',
      [this.g.constant(0, 'int64', []), n, this.g.constant(1, 'int64', [])],
      {},
      { infos: [{ dtype: 'int64', shape: [like.shape[1]] }] },
    );
  }

  /** Positions counted over real tokens only (cumsum of the mask − 1), so left padding does not shift them. */
  positionsFromMask(mask: Value): Value {
    const c = this.g.op1('CumSum', [mask, this.g.constant(1, 'int64', [])]);
    return this.g.op1('Max', [
      this.g.op1('Sub', [c, this.g.constant(1, 'int64', [])]),
      this.g.constant(0, 'int64', []),
    ]);
  }

  /** Additive attention bias [batch, 1, q, k]: 0 where a query may attend a key, float32 min elsewhere. */
  attentionBias(keyMask: Value, causal: boolean, queryLike?: Value): Value {
    const g = this.g;
    const B: Dim = keyMask.shape[0],
      S: Dim = keyMask.shape[1];
    let allow = g.op1('Cast', [g.op1('Unsqueeze', [keyMask, this.i64([1, 2])])], { to: DTYPES.bool.onnx }); // [B,1,1,S]
    if (causal) {
      const q = queryLike ?? keyMask;
      const shp = g.op1(
        'Concat',
        [g.op1('Shape', [q], { start: 1, end: 2 }), g.op1('Shape', [keyMask], { start: 1, end: 2 })],
        { axis: 0 },
      );
      const ones = g.op1(
        'ConstantOfShape',
        [shp],
        { value: { dtype: 'bool', shape: [1], data: Uint8Array.of(1) } },
        { infos: [{ dtype: 'bool', shape: [q.shape[1], S] }] },
      );
      const lower = g.op1('Cast', [g.op1('Trilu', [g.op1('Cast', [ones], { to: DTYPES.int64.onnx })], { upper: 0 })], {
        to: DTYPES.bool.onnx,
      });
      allow = g.op1('And', [allow, lower]);
    }
    void B;
    return g.op1('Where', [allow, g.constant(0, 'float32', []), g.constant(MASK_MIN, 'float32', [])]);
  }

  /** softmax(q·kᵀ·scale + bias)·v over [batch, heads, seq, dh]. */
  attend(q: Value, k: Value, v: Value, bias: Value | undefined, scale: number): Value {
    const g = this.g;
    let s = g.op1('FusedMatMul', [q, k], scale === 1 ? { transB: 1 } : { transB: 1, alpha: scale });
    if (bias) s = g.op1('Add', [s, bias]);
    return g.op1('MatMul', [g.op1('Softmax', [s], { axis: -1 }), v]);
  }

  /**
   * Causal self-attention as one fused node (ModelOptions.attention = 'fused'): queries [batch, seq, heads·dh], keys
   * and values [batch, seq, kvHeads·dh], each key/value head serving heads/kvHeads query heads as repeat_kv does;
   * returns the context [batch, seq, heads·dh].
   */
  causalSelfAttention(q: Value, k: Value, v: Value, heads: number, kvHeads: number, dh: number, scale: number): Value {
    const g = this.g;
    const shared = (t: Value): Value =>
      kvHeads === heads
        ? t
        : g.op1('Reshape', [
            g.op1('Expand', [
              g.op1('Reshape', [t, this.i64([0, 0, kvHeads, 1, dh])]),
              this.i64([1, 1, 1, heads / kvHeads, 1]),
            ]),
            this.i64([0, 0, heads * dh]),
          ]);
    return g.op1('MultiHeadAttention', [q, shared(k), shared(v)], { num_heads: heads, unidirectional: 1, scale });
  }

  /** Mean cross-entropy over the labels that are not −100, as transformers computes it. */
  crossEntropy(logits: Value, labels: Value, vocab: number): Value {
    const flat = this.g.op1('Reshape', [logits, this.i64([-1, vocab])]);
    const y = this.g.op1('Reshape', [labels, this.i64([-1])]);
    return this.g.op1('SoftmaxCrossEntropyLoss', [flat, y], { ignore_index: -100 }, { names: ['loss'] });
  }

  /** transformers' causal-LM loss: logits at t predict labels at t+1. */
  causalLmLoss(logits: Value, labels: Value, vocab: number): Value {
    const g = this.g;
    const big = 2 ** 62;
    const l = g.op1('Slice', [logits, this.i64([0]), this.i64([-1]), this.i64([1])]);
    const y = g.op1('Slice', [labels, this.i64([1]), this.i64([big]), this.i64([1])]);
    return this.crossEntropy(l, y, vocab);
  }

  /** The hidden state of each row's last real token (right or left padding alike): [batch, seq, d] → [batch, d]. */
  lastToken(h: Value, mask: Value): Value {
    const g = this.g;
    const idx = this.arange(mask);
    const scored = g.op1('Mul', [mask, g.op1('Add', [idx, g.constant(1, 'int64', [])])]);
    const last = g.op1('ReduceMax', [scored, this.i64([1])], { keepdims: 1 });
    const pick = g.op1('Cast', [g.op1('Equal', [scored, last])], { to: DTYPES.float32.onnx });
    return g.op1('ReduceSum', [g.op1('Mul', [h, g.op1('Unsqueeze', [pick, this.i64([2])])]), this.i64([1])], {
      keepdims: 0,
    });
  }

  /** Row 0 of the sequence axis: [batch, seq, d] → [batch, d]. */
  firstToken(h: Value): Value {
    return this.g.op1('Squeeze', [
      this.g.op1('Slice', [h, this.i64([0]), this.i64([1]), this.i64([1])]),
      this.i64([1]),
    ]);
  }
}
