// A small GPT-style causal LM with a LoRA branch on chosen projections: the engine's end-to-end test bed and
// benchmark model, and the model of `delta-studio demo`. The PyTorch twin in bench/torch_peer.py mirrors it.
import { Graph, type HostTensor, type Value } from '../onnx/graph.js';
import { Rng } from '../rng.js';

export interface TinyLmConfig {
  vocab: number;
  d: number;
  layers: number;
  heads: number;
  seq: number;
  /** LoRA rank; the branch is x·A·B·(alpha/rank), A [d, r], B [r, d] (B starts at zero). */
  rank: number;
  alpha: number;
  /** Projections that get a LoRA branch, out of q, k, v, o. */
  targets: ('q' | 'k' | 'v' | 'o')[];
  dropout: number;
  /** Standard deviation of the frozen random weights. */
  initStd: number;
  seed: number;
}

export const TINY: TinyLmConfig = {
  vocab: 32,
  d: 32,
  layers: 2,
  heads: 2,
  seq: 16,
  rank: 4,
  alpha: 8,
  targets: ['q', 'v'],
  dropout: 0,
  initStd: 0.3,
  seed: 1,
};
export const BENCH: TinyLmConfig = {
  vocab: 4096,
  d: 256,
  layers: 4,
  heads: 4,
  seq: 128,
  rank: 8,
  alpha: 16,
  targets: ['q', 'v'],
  dropout: 0,
  initStd: 0.02,
  seed: 1,
};

export interface TinyLm {
  graph: Graph;
  /** Name of the scalar loss value. */
  loss: string;
  logits: string;
  trainable: string[];
  /** Initial values of every parameter (frozen ones are also graph initializers). */
  weights: Record<string, HostTensor>;
}

function tensor(shape: number[], fill: (i: number) => number): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'float32', shape, data: Float32Array.from({ length: n }, (_, i) => fill(i)) };
}

/** Builds the forward graph: ids [batch, seq] and labels [batch, seq] in, mean next-token cross-entropy out. */
export function buildTinyLm(cfg: TinyLmConfig): TinyLm {
  const { vocab: V, d: D, layers: L, heads: H, seq: S, rank: R } = cfg;
  if (D % H !== 0) throw new Error(`d (${D}) must be divisible by heads (${H})`);
  const dh = D / H;
  const rng = new Rng(cfg.seed);
  const g = new Graph();
  const weights: Record<string, HostTensor> = {};
  const trainable: string[] = [];
  const frozen = (name: string, t: HostTensor): Value => {
    weights[name] = t;
    return g.initializer(name, t);
  };
  const lora = (name: string, t: HostTensor): Value => {
    weights[name] = t;
    trainable.push(name);
    return g.initializer(name, t);
  };
  const normal = (shape: number[]): HostTensor => tensor(shape, () => cfg.initStd * rng.normal());
  const zeros = (shape: number[]): HostTensor => tensor(shape, () => 0);
  const ones = (shape: number[]): HostTensor => tensor(shape, () => 1);
  const i64 = (v: number[]): Value => g.constant(v, 'int64', [v.length]);
  const dropout = (x: Value): Value =>
    cfg.dropout > 0 ? g.op1('Dropout', [x, g.constant(cfg.dropout, 'float32', []), g.constant(1, 'bool', [])]) : x;

  const ids = g.input('input_ids', 'int64', ['batch', S]);
  const labels = g.input('labels', 'int64', ['batch', S]);
  const wte = frozen('wte', normal([V, D]));
  const wpe = frozen('wpe', normal([S, D]));
  let x = g.op1('Add', [g.op1('Gather', [wte, ids], { axis: 0 }), wpe]);
  // Additive causal mask: 0 on and below the diagonal, a large negative number above it.
  const mask = g.constant(
    Array.from({ length: S * S }, (_, i) => (i % S > Math.floor(i / S) ? -1e9 : 0)),
    'float32',
    [S, S],
  );

  const linear = (name: string, inp: Value, din: number, dout: number, withLora: boolean): Value =>
    g.scope(name, () => {
      let y = g.op1('Add', [
        g.op1('MatMul', [inp, frozen(`${name}.weight`, normal([din, dout]))]),
        frozen(`${name}.bias`, zeros([dout])),
      ]);
      if (withLora) {
        const bound = 1 / Math.sqrt(din); // kaiming-uniform with a = √5, as PEFT initialises lora_A
        const a = lora(
          `${name}.lora_A`,
          tensor([din, R], () => rng.uniform(-bound, bound)),
        );
        const b = lora(`${name}.lora_B`, zeros([R, dout]));
        const branch = g.op1('MatMul', [g.op1('MatMul', [dropout(inp), a]), b]);
        y = g.op1('Add', [y, g.op1('Mul', [branch, g.constant(cfg.alpha / R, 'float32', [])])]);
      }
      return y;
    });
  const layerNorm = (name: string, inp: Value): Value =>
    g.op1('LayerNormalization', [inp, frozen(`${name}.weight`, ones([D])), frozen(`${name}.bias`, zeros([D]))], {
      axis: -1,
      epsilon: 1e-5,
    });

  for (let l = 0; l < L; l++) {
    const p = `h.${l}`;
    g.scope(p, () => {
      const hn = layerNorm(`${p}.ln_1`, x);
      const heads = (v: Value): Value =>
        g.op1('Transpose', [g.op1('Reshape', [v, i64([0, 0, H, dh])])], { perm: [0, 2, 1, 3] });
      const q = heads(linear(`${p}.attn.q`, hn, D, D, cfg.targets.includes('q')));
      const k = heads(linear(`${p}.attn.k`, hn, D, D, cfg.targets.includes('k')));
      const v = heads(linear(`${p}.attn.v`, hn, D, D, cfg.targets.includes('v')));
      const scores = g.op1('Add', [g.op1('FusedMatMul', [q, k], { transB: 1, alpha: 1 / Math.sqrt(dh) }), mask]);
      const probs = dropout(g.op1('Softmax', [scores], { axis: -1 }));
      const ctx = g.op1('Reshape', [
        g.op1('Transpose', [g.op1('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }),
        i64([0, 0, D]),
      ]);
      x = g.op1('Add', [x, dropout(linear(`${p}.attn.o`, ctx, D, D, cfg.targets.includes('o')))]);
      const hn2 = layerNorm(`${p}.ln_2`, x);
      const ff = linear(
        `${p}.mlp.fc_out`,
        g.op1('Gelu', [linear(`${p}.mlp.fc_in`, hn2, D, 4 * D, false)]),
        4 * D,
        D,
        false,
      );
      x = g.op1('Add', [x, dropout(ff)]);
    });
  }
  const logits = g.op1(
    'MatMul',
    [layerNorm('ln_f', x), frozen('lm_head.weight', normal([D, V]))],
    {},
    { names: ['logits'] },
  );
  const loss = g.op1(
    'SoftmaxCrossEntropyLoss',
    [g.op1('Reshape', [logits, i64([-1, V])]), g.op1('Reshape', [labels, i64([-1])])],
    {},
    { names: ['lm_loss'] },
  );
  g.output(loss);
  g.output(logits);
  return { graph: g, loss: loss.name, logits: logits.name, trainable, weights };
}

/**
 * The toy task: each sequence walks a fixed random permutation of the vocabulary (next = perm[current]),
 * so the next token is a function of the current one and a model can learn it.
 */
export function permutationTask(
  cfg: Pick<TinyLmConfig, 'vocab' | 'seq'>,
  seed: number,
): (batch: number, rng: Rng) => Record<string, HostTensor> {
  const prng = new Rng(seed);
  const perm = Array.from({ length: cfg.vocab }, (_, i) => i);
  for (let i = perm.length - 1; i > 0; i--) {
    const j = prng.int(i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return (batch, rng) => {
    const ids = new BigInt64Array(batch * cfg.seq),
      labels = new BigInt64Array(batch * cfg.seq);
    for (let b = 0; b < batch; b++) {
      let t = rng.int(cfg.vocab);
      for (let s = 0; s < cfg.seq; s++) {
        ids[b * cfg.seq + s] = BigInt(t);
        t = perm[t];
        labels[b * cfg.seq + s] = BigInt(t);
      }
    }
    return {
      input_ids: { dtype: 'int64', shape: [batch, cfg.seq], data: ids },
      labels: { dtype: 'int64', shape: [batch, cfg.seq], data: labels },
    };
  };
}
