// The training step as one graph: loss → gradients → global-norm clipping → AdamW. Trainable parameters and their
// moments go in, updated ones come out; frozen weights stay initializers (in place, in the user's files).
import { buildGradients } from '../autodiff/backward.js';
import { recomputeSet, type RecomputeKind } from '../autodiff/recompute.js';
import { Graph, type Value } from '../onnx/graph.js';
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
}

/** Attention probabilities: S² per head per layer for one Q·Kᵀ product each (see bench/memory.ts for the numbers). */
export const DEFAULT_RECOMPUTE: RecomputeKind[] = ['attention'];

/** Names of the inputs and outputs the trainer feeds and reads. */
export const names = {
  lr: 'lr',
  step: 'step',
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
}

export function decayFor(name: string, rank: number, cfg: AdamWConfig): number {
  for (const grp of cfg.groups ?? []) if (new RegExp(grp.pattern).test(name)) return grp.weightDecay;
  return rank <= 1 ? 0 : (cfg.weightDecay ?? 0.01);
}

/** Appends clipping and AdamW for `grads`; outputs grad_norm and the updated parameters and moments. */
function appendUpdate(
  g: Graph,
  params: Value[],
  grads: Map<string, Value>,
  cfg: AdamWConfig,
  decay: Record<string, number>,
): void {
  const b1 = cfg.beta1 ?? 0.9,
    b2 = cfg.beta2 ?? 0.999,
    eps = cfg.eps ?? 1e-8;
  const f = (v: number): Value => g.constant(v, 'float32', []);
  const lr = g.input(names.lr, 'float32', []);
  const step = g.input(names.step, 'int64', []);
  g.scope('optimizer', () => {
    const sq = params.map((p) => g.op1('ReduceSumSquare', [grads.get(p.name)!], { keepdims: 0 }));
    const norm = g.op1('Sqrt', [sq.length === 1 ? sq[0] : g.op1('Sum', sq)]);
    g.output(norm, names.gradNorm);
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
    for (const p of params) {
      if (p.dtype !== 'float32')
        throw new Error(
          `trainable parameter "${p.name}" is ${p.dtype}; trainable parameters and optimizer state are float32`,
        );
      g.scope(p.name, () => {
        let gr = grads.get(p.name)!;
        if (coef) gr = g.op1('Mul', [gr, coef]);
        const m = g.input(names.m(p.name), 'float32', p.shape);
        const v = g.input(names.v(p.name), 'float32', p.shape);
        const m2 = g.op1('Add', [g.op1('Mul', [m, f(b1)]), g.op1('Mul', [gr, f(1 - b1)])]);
        const v2 = g.op1('Add', [g.op1('Mul', [v, f(b2)]), g.op1('Mul', [g.op1('Mul', [gr, gr]), f(1 - b2)])]);
        const wd = decay[p.name];
        // Decoupled weight decay (Loshchilov & Hutter): p ← p·(1 − lr·wd), then the Adam step.
        const decayed = wd > 0 ? g.op1('Mul', [p, g.op1('Sub', [f(1), g.op1('Mul', [lr, f(wd)])])]) : p;
        const denom = g.op1('Add', [g.op1('Div', [g.op1('Sqrt', [v2]), sqrtBc2]), f(eps)]);
        const upd = g.op1('Sub', [decayed, g.op1('Mul', [stepSize, g.op1('Div', [m2, denom])])]);
        g.output(upd, names.out(p.name));
        g.output(m2, names.mOut(p.name));
        g.output(v2, names.vOut(p.name));
      });
    }
  });
}

function prepareForward(spec: TrainStepSpec): { g: Graph; params: Value[]; dropoutNodes: number } {
  const g = spec.forward.clone();
  const params = spec.trainable.map((p) => (g.initializers.has(p) ? g.promoteToInput(p) : g.value(p)));
  const hasDropout = g.nodes.some((n) => n.op === 'Dropout');
  const dropoutNodes = hasDropout ? lowerDropout(g, g.input(names.seed, 'int64', [])) : 0;
  g.outputs.length = 0;
  g.output(spec.loss, names.loss);
  return { g, params, dropoutNodes };
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
  if (k === 1) {
    const { g, params, dropoutNodes } = prepareForward(spec);
    const grads = g.scope('grad', () =>
      buildGradients(g, { loss: spec.loss, wrt: spec.trainable, recompute: recomputeSet(g, recompute) }),
    );
    appendUpdate(g, params, grads, cfg, decay);
    g.prune();
    return { step: g, trainable: spec.trainable, weightDecay: decay, dropoutNodes };
  }

  const { g: acc, params, dropoutNodes } = prepareForward(spec);
  const seed = acc.constant(1 / k, acc.value(spec.loss).dtype, []);
  const grads = acc.scope('grad', () =>
    buildGradients(acc, { loss: spec.loss, wrt: spec.trainable, seed, recompute: recomputeSet(acc, recompute) }),
  );
  for (const p of params) {
    const sum = acc.input(names.grad(p.name), 'float32', p.shape);
    acc.output(acc.op1('Add', [sum, grads.get(p.name)!]), names.gradOut(p.name));
  }
  acc.prune();

  const apply = new Graph();
  const aParams = params.map((p) => apply.input(p.name, p.dtype, p.shape));
  const aGrads = new Map(aParams.map((p) => [p.name, apply.input(names.grad(p.name), 'float32', p.shape)]));
  appendUpdate(apply, aParams, aGrads, cfg, decay);
  return { accumulate: acc, apply, trainable: spec.trainable, weightDecay: decay, dropoutNodes };
}
