// Half-precision activations for a training step: the forward graph retyped so that the values it makes (and the
// backward pass keeps) are float16, while what needs float32 keeps it — as torch.autocast does, by op:
// - matrix products (and fused attention, whose kernels accumulate in float32) take float16 operands (frozen float32 weights are cast once, and onnxruntime folds the cast into
//   a float16 weight when it loads; trainable parameters stay float32 inputs, cast per step, so their gradients,
//   moments and updates stay float32);
// - softmax, log-softmax, the loss and reductions compute in float32 (their float16 inputs are cast up);
// - LayerNorm/RMSNorm take float16 input and keep their statistics (mean, 1/σ) float32, which is how their kernels
//   compute them on the CPU and CUDA providers;
// - any other op computes in the type of its largest float input (a [batch, seq, hidden] activation, not a bias or
//   cos/sin table), or in float32 when every reader of it computes in float32 (a mask added to attention scores stays
//   float32: float32's most negative number is −∞ in float16, and a fully masked row would then be NaN).
// Casts between float types the model made (mixed precision's casts around each product) are dropped: the pass decides.
import { isFloat, DTYPES, type DType } from '../onnx/dtype.js';
import type { Graph, Node, Value } from '../onnx/graph.js';
import { evalDim } from './memory.js';

const FLOAT32_OPS = new Set([
  'Softmax',
  'LogSoftmax',
  'SoftmaxCrossEntropyLoss',
  'ReduceSum',
  'ReduceMean',
  'ReduceSumSquare',
  'ReduceMax',
  'ReduceProd',
  'CumSum',
]);
const PRODUCTS = new Set(['MatMul', 'FusedMatMul', 'Gemm', 'MultiHeadAttention']);
const NORMS = new Set(['LayerNormalization', 'SimplifiedLayerNormalization']);
/** Ops whose float outputs have a type of their own, not their inputs'. */
const OWN_TYPES = new Set(['Cast', 'Shape', 'Size', 'ConstantOfShape']);

/** Retypes `g`'s forward nodes in place for float16 activations (see the top of this file); returns the casts added. */
export function halfActivations(g: Graph, half: DType = 'float16'): number {
  if (!isFloat(half)) throw new Error(`half activations: ${half} is not a float type`);
  const readers = new Map<string, Node[]>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) readers.set(i, [...(readers.get(i) ?? []), n]);
  const outputs = new Set(g.outputs);
  const sizes: Record<string, number> = {};
  for (const v of g.values.values())
    for (const d of v.shape)
      if (typeof d === 'string') for (const s of d.match(/[A-Za-z_][\w.:/]*/g) ?? []) sizes[s] = 97;
  const size = (v: Value): number => v.shape.reduce<number>((a, d) => a * evalDim(d, sizes), 1);
  const floatCast = (n: Node): boolean =>
    n.op === 'Cast' && isFloat(g.value(n.inputs[0]).dtype) && isFloat(DTYPES_BY_CODE.get(n.attrs.to as number)!);
  // Decided before any retyping: which nodes compute in float32 because all their readers do.
  const wide = new Set<Node>();
  const wants32 = (n: Node): boolean =>
    FLOAT32_OPS.has(n.op) ||
    wide.has(n) ||
    (floatCast(n) && n.outputs.every((o) => !o || (readers.get(o) ?? []).every(wants32)));
  for (let k = g.nodes.length - 1; k >= 0; k--) {
    const n = g.nodes[k];
    if (PRODUCTS.has(n.op) || NORMS.has(n.op) || OWN_TYPES.has(n.op)) continue;
    const outs = n.outputs.filter((o) => o && isFloat(g.value(o).dtype));
    if (outs.length && outs.every((o) => !outputs.has(o) && (readers.get(o) ?? []).length > 0))
      if (outs.every((o) => readers.get(o)!.every(wants32))) wide.add(n);
  }

  const casts = new Map<string, string>();
  let added = 0;
  const castTo = (name: string, to: DType, at: number): string => {
    const v = g.value(name);
    if (v.dtype === to) return name;
    const key = `${name}|${to}`;
    if (!casts.has(key)) {
      const c = g.insertAt(at, () => g.scope(`${name}/as_${to}`, () => g.op1('Cast', [v], { to: DTYPES[to].onnx })));
      casts.set(key, c.name);
      added++;
    }
    return casts.get(key)!;
  };
  const retype = (name: string, to: DType): void => {
    const v = g.value(name);
    if (v.dtype !== to) g.values.set(name, { name, dtype: to, shape: v.shape });
  };

  for (let k = 0; k < g.nodes.length; k++) {
    const n = g.nodes[k];
    const floats = n.inputs.map((i) => !!i && isFloat(g.value(i).dtype));
    if (floatCast(n)) {
      // The pass decides float types: a cast between them becomes a view, typed as its input.
      const from = g.value(n.inputs[0]).dtype;
      const to = wants32(n) ? 'float32' : from;
      n.op = 'Identity';
      n.attrs = {};
      if (to !== from) {
        n.inputs[0] = castTo(n.inputs[0], to, k);
        k = g.nodes.indexOf(n);
      }
      retype(n.outputs[0], to);
      continue;
    }
    if (!floats.some(Boolean) || OWN_TYPES.has(n.op)) continue;
    let compute: DType;
    if (FLOAT32_OPS.has(n.op) || wide.has(n)) compute = 'float32';
    else if (PRODUCTS.has(n.op)) compute = half;
    else {
      // The type of the largest float input (by elements at a middling batch and length); ties go to half.
      let best: Value | undefined;
      for (const [j, i] of n.inputs.entries()) {
        if (!floats[j] || (NORMS.has(n.op) && j > 0)) continue;
        const v = g.value(i);
        if (!best || size(v) > size(best) || (size(v) === size(best) && v.dtype === half)) best = v;
      }
      compute = best!.dtype === half || best!.dtype === 'float32' ? best!.dtype : 'float32';
    }
    n.inputs.forEach((i, j) => {
      if (floats[j] && g.value(i).dtype !== compute) {
        n.inputs[j] = castTo(i, compute, k);
        k = g.nodes.indexOf(n);
      }
    });
    // Norms' statistics (outputs 1, 2) are float32 whatever the input type.
    n.outputs.forEach((o, j) => {
      if (o && isFloat(g.value(o).dtype) && !(NORMS.has(n.op) && j > 0)) retype(o, compute);
    });
  }
  for (const o of g.outputs)
    if (isFloat(g.value(o).dtype) && g.value(o).dtype !== 'float32')
      throw new Error(`half activations: graph output "${o}" became ${g.value(o).dtype}; outputs stay float32`);
  return added;
}

const DTYPES_BY_CODE = new Map(Object.entries(DTYPES).map(([k, v]) => [v.onnx, k as DType]));
