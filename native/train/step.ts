// The training step as one graph: loss → gradients → global-norm clipping → AdamW. Trainable parameters and their
// moments go in, updated ones come out; frozen weights stay initializers (in place, in the user's files).
import { buildGradients } from '../autodiff/backward.js';
import { halfSource } from '../autodiff/emit.js';
import { halfActivations } from '../autodiff/autocast.js';
import { RECOMPUTE_KINDS, recomputeSet, type RecomputeKind } from '../autodiff/recompute.js';
import { DTYPES, type DType } from '../onnx/dtype.js';
import { dimEq, fmtShape } from '../onnx/shape.js';
import { Graph, type Node, type Value } from '../onnx/graph.js';
import { lowerDropout } from './dropout.js';

export interface DecayGroup {
  /** Regular expression over parameter names; the first group that matches a parameter wins. */
  pattern: string;
  weightDecay: number;
}

export interface AdamWConfig {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay for parameters no group matches (vectors — biases, norm scales — get none by default). */
  weightDecay?: number;
  groups?: DecayGroup[];
  /** Clip the global gradient norm to this (0 or undefined: no clipping). */
  maxGradNorm?: number;
}

export interface TrainStepSpec {
  forward: Graph;
  loss: string;
  trainable: string[];
  optimizer?: AdamWConfig;
  /** Micro-batches per optimizer step (gradient accumulation). */
  accumulation?: number;
  /**
   * What the backward pass makes again instead of keeping from the forward pass (see autodiff/recompute.ts).
   * Default DEFAULT_RECOMPUTE; [] keeps everything.
   */
  recompute?: readonly RecomputeKind[];
  /**
   * 'float16': the values the step makes are float16 where that is safe (see autodiff/autocast.ts), the loss is
   * scaled by a `loss_scale` input and gradients unscaled before clipping; a step whose gradients are not finite
   * leaves parameters and moments as they were (StepRunner halves the scale and does not count it). Default 'float32'.
   */
  activations?: 'float32' | 'float16';
  /**
   * With float16 logits, the loss's float32 work is done this many vocabulary columns at a time (see
   * lowerCrossEntropy). Default LOSS_COLUMNS.
   */
  lossColumns?: number;
}

/** Vocabulary columns per float32 chunk of the loss on float16 logits: 512 MiB of float32 at 16k tokens. */
export const LOSS_COLUMNS = 8192;

/**
 * Nothing is recomputed unless asked: on the CPU recomputing attention costs about 5% of a BERT-base step and memory
 * is seldom what stops a run there (`recomputeFor` chooses per device).
 */
export const DEFAULT_RECOMPUTE: RecomputeKind[] = [];

/**
 * What to recompute on a device. Measured on an H200 (bench/results/2026-12-04-h200.json, LoRA on a 317M Llama at
 * 32 × 512, float16 activations): nothing 81.1k tokens/s and 36.2 GB, attention 71.9k and 18.8 GB, every kind 71.9k
 * and 13.6 GB — on CUDA the other kinds cost nothing more. The CPU keeps everything (see DEFAULT_RECOMPUTE).
 */
export function recomputeFor(device: 'cpu' | 'cuda' | 'auto'): RecomputeKind[] {
  return device === 'cuda' ? [...RECOMPUTE_KINDS] : [...DEFAULT_RECOMPUTE];
}

/**
 * How self-attention is built on a device (ModelOptions.attention): fused on CUDA — flash attention in float16, its
 * backward making the probabilities again from Q and K, so nothing S²-sized is kept and the forward never makes it;
 * explicit on the CPU, whose fused kernel is not faster and where the extra Q·Kᵀ of the backward pass is pure cost.
 */
export function attentionFor(
  device: 'cpu' | 'cuda' | 'auto',
  asked: 'auto' | 'fused' | 'explicit' = 'auto',
): 'fused' | 'explicit' {
  return asked !== 'auto' ? asked : device === 'cuda' ? 'fused' : 'explicit';
}

/** Names of the inputs and outputs the trainer feeds and reads. */
export const names = {
  lr: 'lr',
  step: 'step',
  lossScale: 'loss_scale',
  seed: 'dropout_seed',
  loss: 'loss',
  gradNorm: 'grad_norm',
  m: (p: string) => `${p}::adam_m`,
  v: (p: string) => `${p}::adam_v`,
  grad: (p: string) => `${p}::grad_sum`,
  out: (p: string) => `${p}::updated`,
  mOut: (p: string) => `${p}::adam_m_updated`,
  vOut: (p: string) => `${p}::adam_v_updated`,
  gradOut: (p: string) => `${p}::grad_sum_updated`,
};

export interface TrainStepGraphs {
  /** accumulation = 1: forward, backward and update in one graph. */
  step?: Graph;
  /** accumulation > 1: forward and backward; adds this micro-batch's gradient / k into the running sums. */
  accumulate?: Graph;
  /** accumulation > 1: clipping and AdamW from the summed gradients. */
  apply?: Graph;
  trainable: string[];
  weightDecay: Record<string, number>;
  dropoutNodes: number;
  /** The step graphs take a `loss_scale` input (float16 activations). */
  lossScaled: boolean;
}

export function decayFor(name: string, rank: number, cfg: AdamWConfig): number {
  for (const grp of cfg.groups ?? []) if (new RegExp(grp.pattern).test(name)) return grp.weightDecay;
  return rank <= 1 ? 0 : (cfg.weightDecay ?? 0.01);
}

/**
 * The most elements a multi-tensor AdamW bucket holds (16 MB of float32 a copy). Not smaller: on a GPU a kernel over a
 * 1M-element tensor runs for a few microseconds, less than onnxruntime takes to dispatch it, so updating a weight
 * matrix of full fine-tuning by itself (a dozen kernels) costs more than copying it into a bucket and out.
 */
const BUCKET = 4 * 2 ** 20;

/** Appends clipping and AdamW for `grads`; outputs grad_norm and the updated parameters and moments. */
function appendUpdate(
  g: Graph,
  params: Value[],
  grads: Map<string, Value>,
  cfg: AdamWConfig,
  decay: Record<string, number>,
  lossScaled = false,
): void {
  const b1 = cfg.beta1 ?? 0.9,
    b2 = cfg.beta2 ?? 0.999,
    eps = cfg.eps ?? 1e-8;
  const f = (v: number): Value => g.constant(v, 'float32', []);
  const lr = g.input(names.lr, 'float32', []);
  const step = g.input(names.step, 'int64', []);
  g.scope('optimizer', () => {
    for (const p of params) {
      if (p.dtype !== 'float32')
        throw new Error(
          `trainable parameter "${p.name}" is ${p.dtype}; trainable parameters and optimizer state are float32`,
        );
      if (!p.shape.every((d) => typeof d === 'number'))
        throw new Error(`trainable parameter "${p.name}" has shape ${fmtShape(p.shape)}; its shape must be fixed`);
    }
    // Multi-tensor AdamW: small parameters that share a weight decay are updated as one flat vector, so the update is
    // a dozen kernels per bucket rather than per tensor (LoRA on 24 layers has 96 tensors: on CUDA their kernels cost
    // more to launch than to run). Every element goes through the same operations as it would alone. A bucket holds
    // at most BUCKET elements, and a larger tensor is updated by itself: the flat copies stay small.
    const count = (v: Value): number => (v.shape as number[]).reduce((a, b) => a * b, 1);
    const byDecay = new Map<number, Value[]>();
    for (const p of params) byDecay.set(decay[p.name], [...(byDecay.get(decay[p.name]) ?? []), p]);
    const groups: { wd: number; ps: Value[]; scope: string }[] = [];
    for (const [wd, ps] of byDecay) {
      let bucket: Value[] = [],
        size = 0;
      const close = (): void => {
        if (bucket.length) groups.push({ wd, ps: bucket, scope: `bucket${groups.length}` });
        bucket = [];
        size = 0;
      };
      for (const p of ps) {
        if (size + count(p) > BUCKET) close();
        bucket.push(p);
        size += count(p);
      }
      close();
    }
    const flat = (vs: Value[]): Value =>
      vs.length === 1
        ? vs[0]
        : g.op1(
            'Concat',
            vs.map((v) => g.op1('Reshape', [v, g.constant([-1], 'int64', [1])])),
            { axis: 0 },
          );
    // Gradients of a scaled loss are unscaled before anything reads them.
    const inv = lossScaled
      ? g.op1('Reciprocal', [
          g.values.has(names.lossScale) ? g.value(names.lossScale) : g.input(names.lossScale, 'float32', []),
        ])
      : undefined;
    const flatGrads = groups.map(({ ps, scope }) =>
      g.scope(scope, () => {
        const gr = flat(ps.map((p) => grads.get(p.name)!));
        return inv ? g.op1('Mul', [gr, inv]) : gr;
      }),
    );
    const sq = flatGrads.map((gr) => g.op1('ReduceSumSquare', [gr], { keepdims: 0 }));
    const norm = g.op1('Sqrt', [sq.length === 1 ? sq[0] : g.op1('Sum', sq)]);
    g.output(norm, names.gradNorm);
    // Not finite (overflow in float16): keep parameters and moments (NaN < x is false, as is ∞ < x).
    const finite = lossScaled ? g.op1('Less', [norm, f(3.4e38)]) : undefined;
    const keepIf = (v: Value, old: Value): Value => (finite ? g.op1('Where', [finite, v, old]) : v);
    let coef: Value | undefined;
    if (cfg.maxGradNorm && cfg.maxGradNorm > 0) {
      // As torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
      coef = g.op1('Min', [f(1), g.op1('Div', [f(cfg.maxGradNorm), g.op1('Add', [norm, f(1e-6)])])]);
    }
    const t = g.op1('Cast', [step], { to: 1 });
    const bc1 = g.op1('Sub', [f(1), g.op1('Pow', [f(b1), t])]);
    const bc2 = g.op1('Sub', [f(1), g.op1('Pow', [f(b2), t])]);
    const stepSize = g.op1('Div', [lr, bc1]);
    const sqrtBc2 = g.op1('Sqrt', [bc2]);
    groups.forEach(({ wd, ps, scope }, i) =>
      g.scope(scope, () => {
        let gr = flatGrads[i];
        if (coef) gr = g.op1('Mul', [gr, coef]);
        const p = flat(ps);
        const m = flat(ps.map((x) => g.input(names.m(x.name), 'float32', x.shape)));
        const v = flat(ps.map((x) => g.input(names.v(x.name), 'float32', x.shape)));
        const m2 = g.op1('Add', [g.op1('Mul', [m, f(b1)]), g.op1('Mul', [gr, f(1 - b1)])]);
        const v2 = g.op1('Add', [g.op1('Mul', [v, f(b2)]), g.op1('Mul', [g.op1('Mul', [gr, gr]), f(1 - b2)])]);
        // Decoupled weight decay (Loshchilov & Hutter): p ← p·(1 − lr·wd), then the Adam step.
        const decayed = wd > 0 ? g.op1('Mul', [p, g.op1('Sub', [f(1), g.op1('Mul', [lr, f(wd)])])]) : p;
        const denom = g.op1('Add', [g.op1('Div', [g.op1('Sqrt', [v2]), sqrtBc2]), f(eps)]);
        const upd = g.op1('Sub', [decayed, g.op1('Mul', [stepSize, g.op1('Div', [m2, denom])])]);
        // Back to one tensor a parameter, each reshaped straight into its output's name (no Identity to rename it).
        const unflat = (x: Value, name: (p: string) => string): Value[] => {
          if (ps.length === 1) return [x];
          const sizes = ps.map(count);
          const parts = g.op(
            'Split',
            [x, g.constant(sizes, 'int64', [sizes.length])],
            { axis: 0 },
            { outputs: ps.length },
          );
          return parts.map((part, j) =>
            g.op1(
              'Reshape',
              [part, g.constant(ps[j].shape as number[], 'int64', [ps[j].shape.length])],
              {},
              {
                names: [name(ps[j].name)],
              },
            ),
          );
        };
        for (const [x, old, name] of [
          [upd, p, names.out],
          [m2, m, names.mOut],
          [v2, v, names.vOut],
        ] as const) {
          const kept = keepIf(x, old);
          unflat(kept, name).forEach((out, j) => g.output(out, name(ps[j].name)));
        }
      }),
    );
  });
}

function prepareForward(spec: TrainStepSpec): { g: Graph; params: Value[]; dropoutNodes: number } {
  const g = spec.forward.clone();
  const params = spec.trainable.map((p) => (g.initializers.has(p) ? g.promoteToInput(p) : g.value(p)));
  const hasDropout = g.nodes.some((n) => n.op === 'Dropout');
  const dropoutNodes = hasDropout ? lowerDropout(g, g.input(names.seed, 'int64', [])) : 0;
  g.outputs.length = 0;
  g.output(spec.loss, names.loss);
  sliceBeforeProducts(g);
  if (spec.activations === 'float16') halfActivations(g);
  return { g, params, dropoutNodes };
}

/**
 * A Slice of a product's rows (a causal LM's logits without their last position) becomes the product of sliced rows:
 * the [batch, seq, vocab] logits are never made whole, and the gradient is padded at [batch, seq, hidden], not at
 * the vocabulary's width. Also through casts (mixed precision casts around the product). Only where the slice is the
 * product's one reader and no sliced axis is a product's last (column) axis.
 */
function sliceBeforeProducts(g: Graph): void {
  g.prune();
  const readers = (v: string): number => g.nodes.filter((n) => n.inputs.includes(v)).length + +g.outputs.includes(v);
  const producer = g.producers();
  for (const slice of [...g.nodes]) {
    if (slice.op !== 'Slice') continue;
    const axes = g.constValue(slice.inputs[3] ?? '');
    const out = g.value(slice.outputs[0]);
    if (!axes) continue;
    let v = slice.inputs[0];
    const chain: Node[] = [];
    for (let p = producer.get(v); p && readers(v) === 1; p = producer.get(v)) {
      chain.push(p);
      if (p.op !== 'Cast') break;
      v = p.inputs[0];
    }
    const product = chain[chain.length - 1];
    if (!product || !['MatMul', 'FusedMatMul'].includes(product.op) || product.attrs.transA) continue;
    const a = g.value(product.inputs[0]);
    const rank = out.shape.length;
    const rows = axes.map((x) => (x < 0 ? x + rank : x));
    if (a.shape.length !== rank || !rows.every((x) => x < rank - 1 && dimEq(a.shape[x], g.value(v).shape[x]))) continue;
    // Rebuild the chain over the sliced rows, where the Slice was, and read it instead of the Slice.
    const at = g.nodes.indexOf(slice);
    const rebuilt = g.insertAt(at, () =>
      g.scope(slice.name, () => {
        let x = g.op1('Slice', [a, ...slice.inputs.slice(1)]);
        for (const n of [...chain].reverse()) x = g.op1(n.op, [x, ...n.inputs.slice(1)], n.attrs);
        return x;
      }),
    );
    if (rebuilt.shape.length !== rank) throw new Error(`internal: ${slice.name} rebuilt as ${rebuilt.name}`);
    g.replaceUses(slice.outputs[0], rebuilt.name);
  }
  g.prune();
}

/**
 * Moves the node that outputs the loss to the end. onnxruntime starts its depth-first order at the last node nobody
 * reads (see autodiff/memory.ts), so the loss is then computed with the forward pass; first in the list, it would be
 * computed after the whole backward pass, keeping what it reads (the log probabilities) alive through it.
 */
function lossFirst(g: Graph): void {
  const at = g.nodes.findIndex((n) => n.outputs.includes(names.loss));
  if (at >= 0) g.nodes.push(...g.nodes.splice(at, 1));
}

/**
 * SoftmaxCrossEntropyLoss over [N, C] scores as LogSoftmax over the last axis and a gather of each label's log
 * probability, after the gradient is built (its rule reads the log probabilities). onnxruntime has no kernel for the
 * op outside its training builds and expands it into the ONNX function, which reshapes the scores to [N, C, 1] and
 * takes LogSoftmax over axis 1 — not the last, so the CPU and CUDA kernels transpose in and out: two more [N, C]
 * buffers at the step's largest moment (four times 2 GB for a 32k vocabulary at 16k tokens).
 * When the scores are a float32 copy of float16 logits and the gradient only picks entries of the log probabilities
 * (its rule does, at the labels), no float32 [N, C] value is made at all: a row's log probabilities are its logits
 * minus its log-sum-exp, which is taken a chunk of `columns` at a time (logSumExp).
 */
function lowerCrossEntropy(g: Graph, columns: number): void {
  for (let i = 0; i < g.nodes.length; i++) {
    const n = g.nodes[i];
    if (n.op !== 'SoftmaxCrossEntropyLoss') continue;
    const scores = g.value(n.inputs[0]),
      labels = g.value(n.inputs[1]);
    if (scores.shape.length !== 2) continue;
    const [lossName, logpName] = n.outputs;
    const loss = g.value(lossName);
    const half = halfSource(g, scores);
    // Whoever reads the log probabilities besides the loss (its gradient rule) only picks entries of them.
    const picks = logpName ? g.nodes.filter((r) => r.inputs.includes(logpName)) : [];
    const chunked =
      half &&
      typeof scores.shape[1] === 'number' &&
      picks.every((r) => r.op === 'GatherElements' && r.inputs[0] === logpName && r.attrs.axis === 1);
    g.nodes.splice(i, 1);
    g.values.delete(lossName);
    if (logpName && !chunked) g.values.delete(logpName);
    const ignore = n.attrs.ignore_index as number | undefined;
    const reduction = (n.attrs.reduction as string | undefined) ?? 'mean';
    const added = g.nodes.length;
    const dt = scores.dtype;
    let lse: Value | undefined;
    // log p[i, j] at the given columns = x[i, j] − lse[i], in float32 from the float16 logits.
    const pickAt = (idx: Value): Value =>
      g.op1('Sub', [
        g.op1('Cast', [g.op1('GatherElements', [half!, idx], { axis: 1 })], { to: DTYPES[dt].onnx }),
        lse!,
      ]);
    g.insertAt(i, () =>
      g.scope(n.name, () => {
        let logp: Value | undefined;
        if (chunked) lse = logSumExp(g, half, dt, columns);
        else logp = g.op1('LogSoftmax', [scores], { axis: -1 }, logpName ? { names: [logpName] } : {});
        const i64 = (v: number): Value => g.constant(v, 'int64', []);
        let safe = labels.dtype === 'int64' ? labels : g.op1('Cast', [labels], { to: 7 });
        let valid: Value | undefined;
        if (ignore !== undefined) {
          valid = g.op1('Not', [g.op1('Equal', [safe, i64(ignore)])]);
          safe = g.op1('Where', [valid, safe, i64(0)]);
        }
        const count = g.op1('Shape', [labels]);
        const axis1 = g.constant([1], 'int64', [1]);
        let picked: Value;
        if (chunked) picked = g.op1('Squeeze', [pickAt(g.op1('Unsqueeze', [safe, axis1])), axis1]);
        else {
          // Row r's label l at r·C + l of the flattened log probabilities.
          const rows = g.op1(
            'Range',
            [i64(0), g.op1('Squeeze', [count, g.constant([0], 'int64', [1])]), i64(1)],
            {},
            { infos: [{ dtype: 'int64', shape: labels.shape }] },
          );
          const width =
            typeof scores.shape[1] === 'number'
              ? i64(scores.shape[1])
              : g.op1('Squeeze', [g.op1('Shape', [scores], { start: 1, end: 2 })]);
          const flat = g.op1('Reshape', [logp!, g.constant([-1], 'int64', [1])]);
          picked = g.op1('Gather', [flat, g.op1('Add', [g.op1('Mul', [rows, width]), safe])], { axis: 0 });
        }
        let w: Value | undefined = valid ? g.op1('Cast', [valid], { to: DTYPES[dt].onnx }) : undefined;
        if (n.inputs[2]) {
          const cw = g.op1('Gather', [n.inputs[2], safe], { axis: 0 });
          w = w ? g.op1('Mul', [w, cw]) : cw;
        }
        const nll = g.op1('Neg', [w ? g.op1('Mul', [picked, w]) : picked]);
        const sum = (v: Value, name?: string): Value =>
          g.op1('ReduceSum', [v], { keepdims: 0 }, name ? { names: [name] } : {});
        if (reduction === 'none') return g.op1('Identity', [nll], {}, { names: [lossName] });
        if (reduction === 'sum') return sum(nll, lossName);
        const denominator = w ? sum(w) : g.op1('Cast', [count], { to: DTYPES[dt].onnx });
        return g.op1('Div', [sum(nll), w ? denominator : g.op1('Squeeze', [denominator])], {}, { names: [lossName] });
      }),
    );
    if (g.value(lossName).shape.length !== loss.shape.length)
      throw new Error(`internal: ${n.name} lowered to ${lossName}`);
    i += g.nodes.length - added;
    if (chunked) {
      // The gradient's picks read the float16 logits and the row's log-sum-exp instead: no [N, C] log probabilities.
      for (const r of picks) {
        const v = g.insertAt(g.nodes.indexOf(r), () => g.scope(r.name, () => pickAt(g.value(r.inputs[1]))));
        g.replaceUses(r.outputs[0], v.name);
        g.nodes.splice(g.nodes.indexOf(r), 1);
      }
      g.values.delete(logpName);
    }
  }
}

/**
 * log Σⱼ exp(x[i, j]) of float16 logits [N, C] in float32, `columns` vocabulary columns at a time: each chunk is cast
 * up and put through LogSoftmax, and its own log-sum-exp read back from its first column (x₀ − log p₀); the chunks'
 * are then combined. onnxruntime runs one chunk after another, so the float32 copies alive at once are one chunk's,
 * not the whole vocabulary's (2 × 4 bytes per logit).
 */
function logSumExp(g: Graph, x: Value, dt: DType, columns: number): Value {
  const C = x.shape[1] as number;
  const k = Math.ceil(C / columns);
  const cols = (v: Value, a: number, b: number): Value =>
    g.op1('Slice', [v, g.constant([a], 'int64', [1]), g.constant([b], 'int64', [1]), g.constant([1], 'int64', [1])]);
  const parts: Value[] = [];
  for (let c = 0; c < k; c++) {
    const [a, b] = [Math.floor((c * C) / k), Math.floor(((c + 1) * C) / k)];
    const wide = g.op1('Cast', [k === 1 ? x : cols(x, a, b)], { to: DTYPES[dt].onnx });
    const logp = g.op1('LogSoftmax', [wide], { axis: -1 });
    parts.push(g.op1('Sub', [cols(wide, 0, 1), cols(logp, 0, 1)]));
  }
  return k === 1
    ? parts[0]
    : g.op1('ReduceLogSumExp', [g.op1('Concat', parts, { axis: 1 }), g.constant([1], 'int64', [1])], { keepdims: 1 });
}

export function buildTrainStep(spec: TrainStepSpec): TrainStepGraphs {
  const cfg = spec.optimizer ?? {};
  const k = spec.accumulation ?? 1;
  if (!Number.isInteger(k) || k < 1) throw new Error(`accumulation must be a positive integer, got ${k}`);
  const seen = new Set<string>();
  for (const p of spec.trainable) {
    if (seen.has(p)) throw new Error(`trainable parameter "${p}" is listed twice`);
    seen.add(p);
    if (!spec.forward.values.has(p)) throw new Error(`trainable parameter "${p}" is not in the graph`);
  }
  const decay: Record<string, number> = {};
  for (const p of spec.trainable) decay[p] = decayFor(p, spec.forward.value(p).shape.length, cfg);

  const recompute = spec.recompute ?? DEFAULT_RECOMPUTE;
  const lossScaled = spec.activations === 'float16';
  // The gradient fed into the loss: the loss scale, over the micro-batches.
  const seedOf = (g: Graph): Value | undefined => {
    if (!lossScaled) return k === 1 ? undefined : g.constant(1 / k, g.value(spec.loss).dtype, []);
    const scale = g.input(names.lossScale, 'float32', []);
    return k === 1 ? scale : g.op1('Mul', [scale, g.constant(1 / k, 'float32', [])]);
  };
  if (k === 1) {
    const { g, params, dropoutNodes } = prepareForward(spec);
    const seed = seedOf(g);
    const grads = g.scope('grad', () =>
      buildGradients(g, { loss: spec.loss, wrt: spec.trainable, seed, recompute: recomputeSet(g, recompute) }),
    );
    lowerCrossEntropy(g, spec.lossColumns ?? LOSS_COLUMNS);
    appendUpdate(g, params, grads, cfg, decay, lossScaled);
    lossFirst(g);
    g.prune();
    return { step: g, trainable: spec.trainable, weightDecay: decay, dropoutNodes, lossScaled };
  }

  const { g: acc, params, dropoutNodes } = prepareForward(spec);
  const seed = seedOf(acc)!;
  const grads = acc.scope('grad', () =>
    buildGradients(acc, { loss: spec.loss, wrt: spec.trainable, seed, recompute: recomputeSet(acc, recompute) }),
  );
  lowerCrossEntropy(acc, spec.lossColumns ?? LOSS_COLUMNS);
  for (const p of params) {
    const sum = acc.input(names.grad(p.name), 'float32', p.shape);
    acc.output(acc.op1('Add', [sum, grads.get(p.name)!]), names.gradOut(p.name));
  }
  lossFirst(acc);
  acc.prune();

  const apply = new Graph();
  const aParams = params.map((p) => apply.input(p.name, p.dtype, p.shape));
  const aGrads = new Map(aParams.map((p) => [p.name, apply.input(names.grad(p.name), 'float32', p.shape)]));
  appendUpdate(apply, aParams, aGrads, cfg, decay, lossScaled);
  return { accumulate: acc, apply, trainable: spec.trainable, weightDecay: decay, dropoutNodes, lossScaled };
}
