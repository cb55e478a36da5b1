// Gradient-check cases: at least one per rule, run by the test suite and by `delta-studio doctor`.
import type { DType } from '../onnx/dtype.js';
import type { Graph, Value } from '../onnx/graph.js';
import type { GradCase } from './gradcheck.js';

const i64 = (g: Graph, v: number[]): Value => g.constant(v, 'int64', [v.length]);
const k = (g: Graph, v: number, dt: DType): Value => g.constant(v, dt, []);
const unary = (op: string, range: [number, number] = [-1, 1], attrs = {}, domain = ''): GradCase => ({
  rule: domain ? `${domain}.${op}` : op,
  label: `${op}${Object.keys(attrs).length ? JSON.stringify(attrs) : ''}`,
  inputs: [{ shape: [3, 4], range }],
  build: (g, [x]) => g.op1(op, [x], attrs),
});
// Values bounded away from a kink, so a finite difference never straddles it.
const awayFromZero = Array.from({ length: 12 }, (_, i) => (i % 2 ? 1 : -1) * (0.2 + 0.07 * i));

// float64 forms of ops onnxruntime runs in float32 only.
function erf64(g: Graph, x: Value): Value {
  // erfc(|x|) = t·exp(−x² − 1.26551223 + t·(1.00002368 + …)) (Numerical Recipes, |error| < 1.2e-7, smooth).
  const c = [
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223,
    0.17087277,
  ];
  const ax = g.op1('Abs', [x]);
  const t = g.op1('Div', [
    k(g, 1, 'float64'),
    g.op1('Add', [k(g, 1, 'float64'), g.op1('Mul', [ax, k(g, 0.5, 'float64')])]),
  ]);
  let poly = k(g, c[9], 'float64');
  for (let i = 8; i >= 0; i--) poly = g.op1('Add', [g.op1('Mul', [poly, t]), k(g, c[i], 'float64')]);
  const erfc = g.op1('Mul', [t, g.op1('Exp', [g.op1('Sub', [poly, g.op1('Mul', [ax, ax])])])]);
  return g.op1('Mul', [g.op1('Sign', [x]), g.op1('Sub', [k(g, 1, 'float64'), erfc])]);
}
function gelu64(g: Graph, x: Value): Value {
  const e = erf64(g, g.op1('Mul', [x, k(g, Math.SQRT1_2, 'float64')]));
  return g.op1('Mul', [g.op1('Mul', [x, k(g, 0.5, 'float64')]), g.op1('Add', [k(g, 1, 'float64'), e])]);
}
function layerNorm64(g: Graph, x: Value, scale: Value, bias: Value | undefined, eps: number, rms: boolean): Value {
  const ax = i64(g, [-1]);
  const xc = rms ? x : g.op1('Sub', [x, g.op1('ReduceMean', [x, ax])]);
  const v = g.op1('ReduceMean', [g.op1('Mul', [xc, xc]), ax]);
  const y = g.op1('Mul', [g.op1('Div', [xc, g.op1('Sqrt', [g.op1('Add', [v, k(g, eps, 'float64')])])]), scale]);
  return bias ? g.op1('Add', [y, bias]) : y;
}

/** Attention written out in float64 (onnxruntime's MultiHeadAttention computes in float32 only): [B,S,N·dh] in and out. */
function attention64(g: Graph, [q, kk, v]: Value[], N: number, causal: boolean): Value {
  const heads = (t: Value): Value =>
    g.op1('Transpose', [g.op1('Reshape', [t, i64(g, [0, 0, N, -1])])], { perm: [0, 2, 1, 3] });
  const dh = (q.shape[2] as number) / N;
  let s = g.op1('Mul', [
    g.op1('MatMul', [heads(q), g.op1('Transpose', [heads(kk)], { perm: [0, 1, 3, 2] })]),
    k(g, 1 / Math.sqrt(dh), 'float64'),
  ]);
  if (causal) {
    // −1e300 above the diagonal (Trilu keeps the strict upper triangle), 0 elsewhere.
    const big = g.op1(
      'ConstantOfShape',
      [g.op1('Shape', [s], { start: 2, end: 4 })],
      { value: { dtype: 'float64', shape: [1], data: Float64Array.of(-1e300) } },
      { infos: [{ dtype: 'float64', shape: s.shape.slice(2) }] },
    );
    s = g.op1('Add', [s, g.op1('Trilu', [big, g.constant(1, 'int64', [])], { upper: 1 })]);
  }
  const o = g.op1('MatMul', [g.op1('Softmax', [s], { axis: -1 }), heads(v)]);
  return g.op1('Reshape', [g.op1('Transpose', [o], { perm: [0, 2, 1, 3] }), i64(g, [0, 0, -1])]);
}

/** Rotary embedding (rotate_half layout) written out in float64: x [B,S,N·dh], positions [B,S], caches [P, dh/2]. */
function rotary64(g: Graph, [x, pos, cos, sin]: Value[], N: number): Value {
  const half = cos.shape[1] as number;
  const at = (cache: Value): Value => g.op1('Unsqueeze', [g.op1('Gather', [cache, pos], { axis: 0 }), i64(g, [2])]);
  const [c, s] = [at(cos), at(sin)]; // [B,S,1,dh/2]
  const heads = g.op1('Reshape', [x, i64(g, [0, 0, N, 2 * half])]);
  const [x1, x2] = g.op('Split', [heads, i64(g, [half, half])], { axis: -1 }, { outputs: 2 });
  const y1 = g.op1('Sub', [g.op1('Mul', [x1, c]), g.op1('Mul', [x2, s])]);
  const y2 = g.op1('Add', [g.op1('Mul', [x2, c]), g.op1('Mul', [x1, s])]);
  return g.op1('Reshape', [g.op1('Concat', [y1, y2], { axis: -1 }), i64(g, [0, 0, -1])]);
}

export const GRAD_CASES: GradCase[] = [
  {
    rule: 'com.microsoft.RotaryEmbedding',
    label: 'rotary embedding, 2 heads, positions per row',
    inputs: [
      { shape: [2, 3, 8], declared: ['batch', 'seq', 8] },
      { shape: [2, 3], declared: ['batch', 'seq'], kind: 'int64', values: [0, 1, 2, 3, 0, 2] },
      { shape: [4, 2], grad: false },
      { shape: [4, 2], grad: false },
    ],
    build: (g, [x, pos, cos, sin]) => g.op1('RotaryEmbedding', [x, pos, cos, sin], { interleaved: 0, num_heads: 2 }),
    reference64: (g, x) => rotary64(g, x, 2),
    linear: true,
  },
  {
    rule: 'com.microsoft.MultiHeadAttention',
    label: 'fused causal self-attention, 2 heads',
    inputs: [
      { shape: [2, 3, 8], declared: ['batch', 'seq', 8] },
      { shape: [2, 3, 8], declared: ['batch', 'seq', 8] },
      { shape: [2, 3, 8], declared: ['batch', 'seq', 8] },
    ],
    build: (g, [q, kk, v]) => g.op1('MultiHeadAttention', [q, kk, v], { num_heads: 2, unidirectional: 1, scale: 0.5 }),
    reference64: (g, x) => attention64(g, x, 2, true),
  },
  {
    rule: 'com.microsoft.MultiHeadAttention',
    label: 'fused attention, 4 keys for 3 queries, default scale',
    inputs: [{ shape: [2, 3, 8] }, { shape: [2, 4, 8] }, { shape: [2, 4, 8] }],
    build: (g, [q, kk, v]) => g.op1('MultiHeadAttention', [q, kk, v], { num_heads: 2 }),
    reference64: (g, x) => attention64(g, x, 2, false),
  },
  unary('Identity'),
  unary('Neg'),
  unary('Exp'),
  unary('Tanh', [-2, 2]),
  unary('Sigmoid', [-3, 3]),
  unary('Sqrt', [0.3, 2]),
  unary('Log', [0.3, 2]),
  unary('Reciprocal', [0.5, 2]),
  { ...unary('Erf', [-2, 2]), reference64: (g, [x]) => erf64(g, x) },
  { ...unary('Relu'), inputs: [{ shape: [3, 4], values: awayFromZero }] },
  { ...unary('Gelu', [-3, 3]), reference64: (g, [x]) => gelu64(g, x) },
  unary('Gelu', [-3, 3], { approximate: 'tanh' }),
  {
    ...unary('QuickGelu', [-3, 3], { alpha: 1.0 }, 'com.microsoft'),
    label: 'SiLU (QuickGelu alpha=1)',
    reference64: (g, [x]) => g.op1('Mul', [x, g.op1('Sigmoid', [x])]),
  },
  {
    ...unary('QuickGelu', [-3, 3], { alpha: 1.702 }, 'com.microsoft'),
    reference64: (g, [x]) => g.op1('Mul', [x, g.op1('Sigmoid', [g.op1('Mul', [x, k(g, 1.702, 'float64')])])]),
  },
  {
    rule: 'com.microsoft.FastGelu',
    label: 'FastGelu with bias',
    inputs: [{ shape: [2, 3, 4], range: [-3, 3] }, { shape: [4] }],
    build: (g, [x, b]) => g.op1('FastGelu', [x, b]),
  },
  {
    rule: 'Add',
    label: 'Add broadcast',
    inputs: [{ shape: [2, 1, 4] }, { shape: [3, 1] }],
    build: (g, [a, b]) => g.op1('Add', [a, b]),
  },
  {
    rule: 'Sub',
    label: 'Sub broadcast',
    inputs: [{ shape: [2, 3] }, { shape: [3] }],
    build: (g, [a, b]) => g.op1('Sub', [a, b]),
  },
  {
    rule: 'Mul',
    label: 'Mul broadcast',
    inputs: [{ shape: [2, 3, 4] }, { shape: [1, 3, 1] }],
    build: (g, [a, b]) => g.op1('Mul', [a, b]),
  },
  { rule: 'Mul', label: 'Mul same input twice', inputs: [{ shape: [3, 4] }], build: (g, [a]) => g.op1('Mul', [a, a]) },
  {
    rule: 'Div',
    label: 'Div broadcast',
    inputs: [{ shape: [2, 3] }, { shape: [2, 1], range: [0.5, 2] }],
    build: (g, [a, b]) => g.op1('Div', [a, b]),
  },
  {
    rule: 'Sum',
    label: 'Sum of three',
    inputs: [{ shape: [2, 3] }, { shape: [3] }, { shape: [2, 1] }],
    build: (g, xs) => g.op1('Sum', xs),
  },
  {
    rule: 'Pow',
    label: 'Pow by constant 3',
    inputs: [{ shape: [3, 4], range: [0.2, 2] }],
    build: (g, [a], dt) => g.op1('Pow', [a, k(g, 3, dt)]),
  },
  {
    rule: 'Pow',
    label: 'Pow by constant 2',
    inputs: [{ shape: [3, 4] }],
    build: (g, [a], dt) => g.op1('Pow', [a, k(g, 2, dt)]),
  },
  {
    rule: 'Pow',
    label: 'Pow trainable exponent',
    inputs: [
      { shape: [3, 4], range: [0.5, 2] },
      { shape: [4], range: [0.5, 2] },
    ],
    build: (g, [a, b]) => g.op1('Pow', [a, b]),
  },
  {
    rule: 'Where',
    label: 'Where broadcast',
    inputs: [{ shape: [2, 3], kind: 'bool', values: [1, 0, 1, 0, 0, 1] }, { shape: [2, 3] }, { shape: [3] }],
    build: (g, [c, a, b]) => g.op1('Where', [c, a, b]),
  },
  {
    rule: 'Cast',
    label: 'Cast up and down',
    inputs: [{ shape: [3, 4] }],
    build: (g, [x]) => g.op1('Cast', [g.op1('Mul', [g.op1('Cast', [x], { to: 11 }), k(g, 2, 'float64')])], { to: 1 }),
    // The float64 graph would round through float32 here, so the reference is the function itself.
    reference64: (g, [x]) => g.op1('Mul', [x, k(g, 2, 'float64')]),
  },
  {
    rule: 'Dropout',
    label: 'Dropout training ratio 0.3',
    inputs: [{ shape: [4, 8] }],
    freshSession: true,
    linear: true,
    build: (g, [x], dt) => g.op1('Dropout', [x, k(g, 0.3, dt), g.constant(1, 'bool', [])], { seed: 7 }),
  },
  {
    rule: 'Softmax',
    label: 'Softmax last axis',
    inputs: [{ shape: [2, 3, 5], range: [-2, 2] }],
    build: (g, [x]) => g.op1('Softmax', [x], { axis: -1 }),
  },
  {
    rule: 'Softmax',
    label: 'Softmax axis 1',
    inputs: [{ shape: [2, 3, 5], range: [-2, 2] }],
    build: (g, [x]) => g.op1('Softmax', [x], { axis: 1 }),
  },
  {
    rule: 'LogSoftmax',
    label: 'LogSoftmax',
    inputs: [{ shape: [3, 6], range: [-2, 2] }],
    build: (g, [x]) => g.op1('LogSoftmax', [x], { axis: -1 }),
  },
  {
    rule: 'SoftmaxCrossEntropyLoss',
    label: 'cross-entropy mean',
    inputs: [
      { shape: [4, 5], range: [-2, 2] },
      { shape: [4], kind: 'int64', values: [1, 0, 4, 2] },
    ],
    build: (g, [x, y]) => g.op1('SoftmaxCrossEntropyLoss', [x, y]),
  },
  {
    rule: 'SoftmaxCrossEntropyLoss',
    label: 'cross-entropy ignore_index, [N,C,T]',
    inputs: [
      { shape: [2, 5, 3], range: [-2, 2] },
      { shape: [2, 3], kind: 'int64', values: [1, -100, 4, 2, 0, -100] },
    ],
    build: (g, [x, y]) => g.op1('SoftmaxCrossEntropyLoss', [x, y], { ignore_index: -100 }),
  },
  {
    rule: 'SoftmaxCrossEntropyLoss',
    label: 'cross-entropy class weights',
    inputs: [
      { shape: [4, 3], range: [-2, 2] },
      { shape: [4], kind: 'int64', values: [2, 0, 1, 2] },
      { shape: [3], range: [0.5, 2], grad: false },
    ],
    build: (g, [x, y, w]) => g.op1('SoftmaxCrossEntropyLoss', [x, y, w]),
  },
  {
    rule: 'SoftmaxCrossEntropyLoss',
    label: 'cross-entropy sum',
    inputs: [{ shape: [3, 4] }, { shape: [3], kind: 'int64', values: [3, 1, 0] }],
    build: (g, [x, y]) => g.op1('SoftmaxCrossEntropyLoss', [x, y], { reduction: 'sum' }),
  },
  {
    rule: 'SoftmaxCrossEntropyLoss',
    label: 'cross-entropy none',
    inputs: [{ shape: [3, 4] }, { shape: [3], kind: 'int64', values: [3, 1, 0] }],
    build: (g, [x, y]) => g.op1('SoftmaxCrossEntropyLoss', [x, y], { reduction: 'none' }),
  },
  {
    rule: 'MatMul',
    label: 'MatMul 2-D',
    inputs: [{ shape: [3, 4] }, { shape: [4, 5] }],
    build: (g, [a, b]) => g.op1('MatMul', [a, b]),
  },
  {
    rule: 'MatMul',
    label: 'MatMul [batch, seq, K] @ weight',
    inputs: [{ shape: [2, 3, 4], declared: ['batch', 'seq', 4] }, { shape: [4, 5] }],
    build: (g, [a, b]) => g.op1('MatMul', [a, b]),
  },
  {
    rule: 'MatMul',
    label: 'MatMul batched broadcast',
    inputs: [{ shape: [2, 1, 3, 4] }, { shape: [3, 4, 2] }],
    build: (g, [a, b]) => g.op1('MatMul', [a, b]),
  },
  {
    rule: 'MatMul',
    label: 'MatMul frozen weight',
    inputs: [{ shape: [2, 3, 4] }, { shape: [4, 5], grad: false }],
    build: (g, [a, b]) => g.op1('MatMul', [a, b]),
  },
  ...[
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
  ].map(([tA, tB]): GradCase => ({
    rule: 'com.microsoft.FusedMatMul',
    label: `FusedMatMul transA=${tA} transB=${tB} alpha=0.5`,
    inputs: [{ shape: tA ? [2, 4, 3] : [2, 3, 4] }, { shape: tB ? [2, 5, 4] : [2, 4, 5] }],
    build: (g, [a, b]) => g.op1('FusedMatMul', [a, b], { transA: tA, transB: tB, alpha: 0.5 }),
  })),
  {
    rule: 'com.microsoft.FusedMatMul',
    label: 'FusedMatMul [batch, seq, K] @ weightᵀ',
    inputs: [{ shape: [2, 3, 4], declared: ['batch', 'seq', 4] }, { shape: [5, 4] }],
    build: (g, [a, b]) => g.op1('FusedMatMul', [a, b], { transB: 1 }),
  },
  ...[
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
  ].map(([tA, tB]): GradCase => ({
    rule: 'Gemm',
    label: `Gemm transA=${tA} transB=${tB} with bias`,
    inputs: [{ shape: tA ? [4, 3] : [3, 4] }, { shape: tB ? [5, 4] : [4, 5] }, { shape: [5] }],
    build: (g, [a, b, c]) => g.op1('Gemm', [a, b, c], { transA: tA, transB: tB, alpha: 0.7, beta: 1.3 }),
  })),
  {
    rule: 'LayerNormalization',
    label: 'LayerNorm with scale and bias',
    inputs: [
      { shape: [2, 3, 8], declared: ['batch', 'seq', 8], range: [-2, 2] },
      { shape: [8], range: [0.5, 1.5] },
      { shape: [8] },
    ],
    build: (g, [x, s, b]) => g.op1('LayerNormalization', [x, s, b], { axis: -1, epsilon: 1e-5 }),
    reference64: (g, [x, s, b]) => layerNorm64(g, x, s, b, 1e-5, false),
  },
  {
    rule: 'SimplifiedLayerNormalization',
    label: 'RMSNorm',
    inputs: [
      { shape: [2, 3, 8], range: [-2, 2] },
      { shape: [8], range: [0.5, 1.5] },
    ],
    build: (g, [x, s]) => g.op1('SimplifiedLayerNormalization', [x, s], { axis: -1, epsilon: 1e-6 }),
    reference64: (g, [x, s]) => layerNorm64(g, x, s, undefined, 1e-6, true),
  },
  {
    rule: 'ReduceSum',
    label: 'ReduceSum keepdims=0',
    inputs: [{ shape: [2, 3, 4] }],
    build: (g, [x]) => g.op1('ReduceSum', [x, i64(g, [1])], { keepdims: 0 }),
  },
  {
    rule: 'ReduceSum',
    label: 'ReduceSum all',
    inputs: [{ shape: [2, 3] }],
    build: (g, [x]) => g.op1('ReduceSum', [x], { keepdims: 0 }),
  },
  {
    rule: 'ReduceMean',
    label: 'ReduceMean keepdims=1',
    inputs: [{ shape: [2, 3, 4] }],
    build: (g, [x]) => g.op1('ReduceMean', [x, i64(g, [-1])]),
  },
  {
    rule: 'ReduceMean',
    label: 'ReduceMean over a symbolic dim',
    inputs: [{ shape: [2, 3, 4], declared: ['batch', 'seq', 4] }],
    build: (g, [x]) => g.op1('ReduceMean', [x, i64(g, [1])], { keepdims: 0 }),
  },
  {
    rule: 'ReduceSumSquare',
    label: 'ReduceSumSquare',
    inputs: [{ shape: [3, 4] }],
    build: (g, [x]) => g.op1('ReduceSumSquare', [x, i64(g, [0])]),
  },
  {
    rule: 'Reshape',
    label: 'Reshape with symbolic batch',
    inputs: [{ shape: [2, 3, 4], declared: ['batch', 3, 4] }],
    build: (g, [x]) => g.op1('Reshape', [x, i64(g, [0, 12])]),
  },
  {
    rule: 'Transpose',
    label: 'Transpose',
    inputs: [{ shape: [2, 3, 4] }],
    build: (g, [x]) => g.op1('Transpose', [x], { perm: [1, 2, 0] }),
  },
  {
    rule: 'Squeeze',
    label: 'Squeeze',
    inputs: [{ shape: [2, 1, 4] }],
    build: (g, [x]) => g.op1('Squeeze', [x, i64(g, [1])]),
  },
  {
    rule: 'Unsqueeze',
    label: 'Unsqueeze',
    inputs: [{ shape: [2, 4] }],
    build: (g, [x]) => g.op1('Unsqueeze', [x, i64(g, [0, 2])]),
  },
  {
    rule: 'Expand',
    label: 'Expand',
    inputs: [{ shape: [3, 1] }],
    build: (g, [x]) => g.op1('Expand', [x, i64(g, [2, 3, 4])]),
  },
  {
    rule: 'Concat',
    label: 'Concat static',
    inputs: [{ shape: [2, 3] }, { shape: [2, 2] }],
    build: (g, [a, b]) => g.op1('Concat', [a, b], { axis: 1 }),
  },
  {
    rule: 'Concat',
    label: 'Concat along a symbolic dim (prefix + keys)',
    inputs: [{ shape: [2, 2, 4] }, { shape: [2, 3, 4], declared: [2, 'seq', 4] }],
    build: (g, [a, b]) => g.op1('Concat', [a, b], { axis: 1 }),
  },
  {
    rule: 'Split',
    label: 'Split with an unused part',
    inputs: [{ shape: [2, 6] }],
    build: (g, [x]) => {
      const [a, , c] = g.op('Split', [x, i64(g, [1, 2, 3])], { axis: 1 }, { outputs: 3 });
      return g.op1('Concat', [g.op1('Mul', [a, a]), c], { axis: 1 });
    },
  },
  {
    rule: 'Slice',
    label: 'Slice static, negative start',
    inputs: [{ shape: [4, 6] }],
    build: (g, [x]) => g.op1('Slice', [x, i64(g, [1, -4]), i64(g, [3, 5]), i64(g, [0, 1])]),
  },
  {
    rule: 'Slice',
    label: 'Slice on a symbolic dim',
    inputs: [{ shape: [2, 5, 4], declared: [2, 'seq', 4] }],
    build: (g, [x]) => g.op1('Slice', [x, i64(g, [1, 0]), i64(g, [2 ** 62, 2]), i64(g, [1, 2])]),
  },
  {
    rule: 'Gather',
    label: 'Gather rows (embedding, repeated and negative ids)',
    inputs: [{ shape: [5, 3] }, { shape: [2, 3], kind: 'int64', values: [0, 4, 4, -1, 2, 0] }],
    build: (g, [w, ids]) => g.op1('Gather', [w, ids], { axis: 0 }),
  },
  {
    rule: 'Gather',
    label: 'Gather with a scalar index (one layer of a stacked tensor)',
    inputs: [{ shape: [3, 2, 4] }, { shape: [], kind: 'int64', values: [1] }],
    build: (g, [x, i]) => g.op1('Gather', [x, i], { axis: 0 }),
  },
  {
    rule: 'Gather',
    label: 'Gather axis 1',
    inputs: [{ shape: [2, 5, 3] }, { shape: [4], kind: 'int64', values: [1, 3, 3, 0] }],
    build: (g, [x, ids]) => g.op1('Gather', [x, ids], { axis: 1 }),
  },
  {
    rule: 'Gather',
    label: 'Gather axis 1, 2-D ids (repeated, negative) between two dims',
    inputs: [{ shape: [2, 5, 3] }, { shape: [2, 2], kind: 'int64', values: [1, -2, 3, 1] }],
    build: (g, [x, ids]) => g.op1('Gather', [x, ids], { axis: 1 }),
  },
  {
    rule: 'Gather',
    label: 'Gather rows by [batch, seq] token ids',
    inputs: [
      { shape: [6, 4] },
      { shape: [2, 3], declared: ['batch', 'seq'], kind: 'int64', values: [5, 0, 5, 2, 2, 5] },
    ],
    build: (g, [w, ids]) => g.op1('Gather', [w, ids], { axis: 0 }),
  },
];
