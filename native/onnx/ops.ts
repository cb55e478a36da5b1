// One entry per ONNX op the engine emits: its domain, attribute kinds and shape inference.
import { type DType, dtypeFromOnnx } from './dtype.js';
import {
  type Dim,
  type Shape,
  broadcast,
  dimAdd,
  dimDiv,
  dimEq,
  dimMul,
  dimProduct,
  fmtShape,
  normAxis,
} from './shape.js';
import type { Attr, Value } from './values.js';

export type AttrKind = 'int' | 'float' | 'ints' | 'floats' | 'string' | 'tensor';

export type Widen<T> = T extends number ? number : T extends string ? string : T;

export interface InferCtx {
  node: string;
  op: string;
  inputs: (Value | undefined)[];
  nOut: number;
  attr<T extends Attr>(name: string, dflt: T): Widen<T>;
  has(name: string): boolean;
  /** Values of a constant integer input, when it is a constant. */
  constInts(i: number): number[] | undefined;
}

export interface OpSchema {
  domain?: string;
  attrs: Record<string, AttrKind>;
  outputs?: number;
  infer(c: InferCtx): { dtype: DType; shape: Shape }[];
}

type Info = { dtype: DType; shape: Shape };

function need(c: InferCtx, i: number): Value {
  const v = c.inputs[i];
  if (!v) throw new Error(`${c.node} (${c.op}): input ${i} is required`);
  return v;
}

function constOf(c: InferCtx, i: number, what: string): number[] {
  const v = c.constInts(i);
  if (!v) throw new Error(`${c.node} (${c.op}): ${what} must be a constant to infer shapes (or pass infos)`);
  return v;
}

const same = (c: InferCtx): Info[] => [{ dtype: need(c, 0).dtype, shape: need(c, 0).shape }];
const unary: OpSchema = { attrs: {}, infer: same };

const bcast = (outDtype?: DType): OpSchema => ({
  attrs: {},
  infer: (c) => {
    const ins = c.inputs.filter((v): v is Value => !!v);
    const dt = ins[0].dtype;
    for (const v of ins) {
      if (v.dtype !== dt)
        throw new Error(`${c.node} (${c.op}): inputs mix ${dt} and ${v.dtype} (${ins.map((x) => x.name).join(', ')})`);
    }
    return [
      {
        dtype: outDtype ?? dt,
        shape: broadcast(
          ins.map((v) => v.shape),
          `${c.node} (${c.op})`,
        ),
      },
    ];
  },
});

function matmulShape(c: InferCtx, a: Shape, b: Shape): Shape {
  const where = `${c.node} (${c.op})`;
  if (a.length < 1 || b.length < 1) throw new Error(`${where}: scalar operands`);
  const a2 = a.length === 1 ? [1, a[0]] : a;
  const b2 = b.length === 1 ? [b[0], 1] : b;
  const k1 = a2[a2.length - 1],
    k2 = b2[b2.length - 2];
  if (!dimEq(k1, k2)) throw new Error(`${where}: inner dimensions differ: ${fmtShape(a)} @ ${fmtShape(b)}`);
  const batch = broadcast([a2.slice(0, -2), b2.slice(0, -2)], where);
  const out = [...batch, a2[a2.length - 2], b2[b2.length - 1]];
  if (a.length === 1) out.splice(out.length - 2, 1);
  if (b.length === 1) out.splice(out.length - 1, 1);
  return out;
}

const swapLast = (s: Shape): Shape => [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];

function reduceShape(c: InferCtx, axesIn: number[] | undefined): Shape {
  const x = need(c, 0);
  const keep = c.attr('keepdims', 1) === 1;
  let axes = axesIn;
  if (!axes || axes.length === 0) {
    if (c.attr('noop_with_empty_axes', 0) === 1) return x.shape;
    axes = x.shape.map((_, i) => i);
  }
  const set = new Set(axes.map((a) => normAxis(a, x.shape.length, `${c.node} (${c.op})`)));
  const out: Shape = [];
  x.shape.forEach((d, i) => {
    if (!set.has(i)) out.push(d);
    else if (keep) out.push(1);
  });
  return out;
}

const reduce: OpSchema = {
  attrs: { keepdims: 'int', noop_with_empty_axes: 'int' },
  infer: (c) => [{ dtype: need(c, 0).dtype, shape: reduceShape(c, c.inputs[1] ? constOf(c, 1, 'axes') : undefined) }],
};

function reshape(c: InferCtx, x: Shape, target: number[]): Shape {
  const where = `${c.node} (Reshape)`;
  const allowzero = c.attr('allowzero', 0) === 1;
  const out: Dim[] = target.map((d, i) => (d === 0 && !allowzero ? x[i] : d));
  const neg = out.findIndex((d) => d === -1);
  if (neg >= 0) {
    const known = dimProduct(out.filter((_, i) => i !== neg));
    const q = dimDiv(dimProduct(x), known);
    if (q === undefined) throw new Error(`${where}: cannot infer -1 reshaping ${fmtShape(x)} to [${target}]`);
    out[neg] = q;
  } else if (!dimEq(dimProduct(out), dimProduct(x)) && dimDiv(dimProduct(x), dimProduct(out)) !== 1) {
    throw new Error(`${where}: cannot reshape ${fmtShape(x)} to [${target}] (element counts differ)`);
  }
  return out;
}

function sliceShape(c: InferCtx): Shape {
  const x = need(c, 0);
  const starts = constOf(c, 1, 'starts'),
    ends = constOf(c, 2, 'ends');
  const axes = c.inputs[3] ? constOf(c, 3, 'axes') : starts.map((_, i) => i);
  const steps = c.inputs[4] ? constOf(c, 4, 'steps') : starts.map(() => 1);
  const out = [...x.shape];
  axes.forEach((a0, i) => {
    const a = normAxis(a0, x.shape.length, `${c.node} (Slice)`);
    const d = x.shape[a];
    const st = steps[i];
    if (typeof d === 'number') {
      const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v < 0 ? v + d : v, lo), hi);
      const s = st > 0 ? clamp(starts[i], 0, d) : clamp(starts[i], -1, d - 1);
      const e = st > 0 ? clamp(ends[i], 0, d) : clamp(ends[i], -1, d - 1);
      out[a] = Math.max(0, Math.ceil((e - s) / st));
    } else if (st === 1 && starts[i] >= 0 && ends[i] >= 0 && ends[i] < 2 ** 31) {
      out[a] = ends[i] - starts[i]; // assumes the symbolic dim is at least `ends`
    } else if (st === 1 && starts[i] >= 0 && ends[i] >= 2 ** 31) {
      out[a] = dimMinus(d, starts[i]);
    } else if (st === 1 && starts[i] >= 0 && ends[i] < 0) {
      out[a] = dimMinus(d, starts[i] - ends[i]);
    } else if (st === 1 && starts[i] < 0 && ends[i] >= 2 ** 31) {
      out[a] = -starts[i];
    } else {
      out[a] = `${d}_sliced`;
    }
  });
  return out;
}

export const OPS: Record<string, OpSchema> = {
  Identity: unary,
  Neg: unary,
  Sqrt: unary,
  Exp: unary,
  Log: unary,
  Tanh: unary,
  Erf: unary,
  Sigmoid: unary,
  Relu: unary,
  Abs: unary,
  Reciprocal: unary,
  Sin: unary,
  Cos: unary,
  Sign: unary,
  Not: unary,
  Gelu: { attrs: { approximate: 'string' }, infer: same },
  FastGelu: { domain: 'com.microsoft', attrs: {}, infer: same },
  QuickGelu: { domain: 'com.microsoft', attrs: { alpha: 'float' }, infer: same },
  Add: bcast(),
  Sub: bcast(),
  Mul: bcast(),
  Div: bcast(),
  Max: bcast(),
  Min: bcast(),
  Sum: bcast(),
  Mod: { attrs: { fmod: 'int' }, infer: bcast().infer },
  BitwiseXor: bcast(),
  BitwiseAnd: bcast(),
  BitShift: { attrs: { direction: 'string' }, infer: bcast().infer },
  Pow: {
    attrs: {},
    infer: (c) => [{ dtype: need(c, 0).dtype, shape: broadcast([need(c, 0).shape, need(c, 1).shape], c.node) }],
  },
  Equal: bcast('bool'),
  Less: bcast('bool'),
  Greater: bcast('bool'),
  LessOrEqual: bcast('bool'),
  GreaterOrEqual: bcast('bool'),
  And: bcast('bool'),
  Or: bcast('bool'),
  Where: {
    attrs: {},
    infer: (c) => {
      const [cond, x, y] = [need(c, 0), need(c, 1), need(c, 2)];
      if (cond.dtype !== 'bool') throw new Error(`${c.node} (Where): condition must be bool, got ${cond.dtype}`);
      if (x.dtype !== y.dtype) throw new Error(`${c.node} (Where): branches mix ${x.dtype} and ${y.dtype}`);
      return [{ dtype: x.dtype, shape: broadcast([cond.shape, x.shape, y.shape], `${c.node} (Where)`) }];
    },
  },
  MatMul: {
    attrs: {},
    infer: (c) => [{ dtype: need(c, 0).dtype, shape: matmulShape(c, need(c, 0).shape, need(c, 1).shape) }],
  },
  FusedMatMul: {
    domain: 'com.microsoft',
    attrs: { alpha: 'float', transA: 'int', transB: 'int', transBatchA: 'int', transBatchB: 'int' },
    infer: (c) => {
      const a = need(c, 0).shape,
        b = need(c, 1).shape;
      if (c.attr('transBatchA', 0) || c.attr('transBatchB', 0))
        throw new Error(`${c.node} (FusedMatMul): transBatch is not supported`);
      return [
        {
          dtype: need(c, 0).dtype,
          shape: matmulShape(c, c.attr('transA', 0) ? swapLast(a) : a, c.attr('transB', 0) ? swapLast(b) : b),
        },
      ];
    },
  },
  // onnxruntime's fused attention, self-attention form only: query, key, value [batch, seq, heads·dh] → the
  // context [batch, seq, heads·dh] (what its CUDA kernel runs as flash attention in float16).
  MultiHeadAttention: {
    domain: 'com.microsoft',
    attrs: { num_heads: 'int', unidirectional: 'int', scale: 'float', mask_filter_value: 'float' },
    outputs: 1,
    infer: (c) => {
      const [q, k, v] = [need(c, 0), need(c, 1), need(c, 2)];
      const heads = c.attr('num_heads', 0);
      if (q.shape.length !== 3 || k.shape.length !== 3 || v.shape.length !== 3)
        throw new Error(`${c.node} (MultiHeadAttention): query, key and value must be [batch, seq, heads·dh]`);
      if (c.inputs.length > 3)
        throw new Error(`${c.node} (MultiHeadAttention): only query, key and value are supported`);
      if (!(heads > 0)) throw new Error(`${c.node} (MultiHeadAttention): num_heads must be positive`);
      if (q.dtype !== k.dtype || q.dtype !== v.dtype)
        throw new Error(`${c.node} (MultiHeadAttention): query, key and value mix ${q.dtype}, ${k.dtype}, ${v.dtype}`);
      return [{ dtype: q.dtype, shape: [q.shape[0], q.shape[1], v.shape[2]] }];
    },
  },
  // onnxruntime's rotary embedding: input [batch, seq, heads·dh], position_ids [batch, seq] (int64), cos and sin
  // caches [positions, dh/2]; interleaved = 0 is transformers' rotate_half layout.
  RotaryEmbedding: {
    domain: 'com.microsoft',
    attrs: { interleaved: 'int', num_heads: 'int', rotary_embedding_dim: 'int', scale: 'float' },
    infer: (c) => {
      const x = need(c, 0);
      if (x.shape.length !== 3) throw new Error(`${c.node} (RotaryEmbedding): input must be [batch, seq, heads·dh]`);
      if (need(c, 1).dtype !== 'int64') throw new Error(`${c.node} (RotaryEmbedding): position_ids must be int64`);
      if (need(c, 2).dtype !== x.dtype || need(c, 3).dtype !== x.dtype)
        throw new Error(`${c.node} (RotaryEmbedding): cos and sin caches must be ${x.dtype} like the input`);
      return [{ dtype: x.dtype, shape: x.shape }];
    },
  },
  Gemm: {
    attrs: { alpha: 'float', beta: 'float', transA: 'int', transB: 'int' },
    infer: (c) => {
      const a = need(c, 0).shape,
        b = need(c, 1).shape;
      if (a.length !== 2 || b.length !== 2)
        throw new Error(`${c.node} (Gemm): operands must be 2-D, got ${fmtShape(a)} and ${fmtShape(b)}`);
      const out = matmulShape(c, c.attr('transA', 0) ? swapLast(a) : a, c.attr('transB', 0) ? swapLast(b) : b);
      if (c.inputs[2]) broadcast([out, c.inputs[2].shape], `${c.node} (Gemm bias)`);
      return [{ dtype: need(c, 0).dtype, shape: out }];
    },
  },
  Softmax: { attrs: { axis: 'int' }, infer: same },
  LogSoftmax: { attrs: { axis: 'int' }, infer: same },
  LayerNormalization: {
    attrs: { axis: 'int', epsilon: 'float', stash_type: 'int' },
    outputs: 1,
    infer: (c) => {
      const x = need(c, 0);
      const axis = normAxis(c.attr('axis', -1), x.shape.length, `${c.node} (LayerNormalization)`);
      const stats = x.shape.map((d, i) => (i < axis ? d : 1));
      const sdt: DType = x.dtype === 'float64' ? 'float64' : 'float32';
      return [
        { dtype: x.dtype, shape: x.shape },
        { dtype: sdt, shape: stats },
        { dtype: sdt, shape: stats },
      ];
    },
  },
  SimplifiedLayerNormalization: {
    attrs: { axis: 'int', epsilon: 'float', stash_type: 'int' },
    outputs: 1,
    infer: (c) => {
      const x = need(c, 0);
      const axis = normAxis(c.attr('axis', -1), x.shape.length, `${c.node} (SimplifiedLayerNormalization)`);
      return [
        { dtype: x.dtype, shape: x.shape },
        { dtype: x.dtype === 'float64' ? 'float64' : 'float32', shape: x.shape.map((d, i) => (i < axis ? d : 1)) },
      ];
    },
  },
  ReduceSum: reduce,
  ReduceMean: reduce,
  ReduceSumSquare: reduce,
  ReduceMax: reduce,
  ReduceProd: reduce,
  ReduceLogSumExp: reduce,
  Size: { attrs: {}, infer: () => [{ dtype: 'int64', shape: [] }] },
  Reshape: {
    attrs: { allowzero: 'int' },
    infer: (c) => [{ dtype: need(c, 0).dtype, shape: reshape(c, need(c, 0).shape, constOf(c, 1, 'shape')) }],
  },
  Transpose: {
    attrs: { perm: 'ints' },
    infer: (c) => {
      const x = need(c, 0);
      const perm = c.attr<number[]>(
        'perm',
        x.shape.map((_, i) => x.shape.length - 1 - i),
      );
      if (perm.length !== x.shape.length)
        throw new Error(`${c.node} (Transpose): perm [${perm}] for rank ${x.shape.length}`);
      return [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]) }];
    },
  },
  Squeeze: {
    attrs: {},
    infer: (c) => {
      const x = need(c, 0);
      const axes = c.inputs[1]
        ? constOf(c, 1, 'axes').map((a) => normAxis(a, x.shape.length, c.node))
        : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
      for (const a of axes)
        if (x.shape[a] !== 1 && typeof x.shape[a] === 'number')
          throw new Error(`${c.node} (Squeeze): dim ${a} of ${fmtShape(x.shape)} is not 1`);
      return [{ dtype: x.dtype, shape: x.shape.filter((_, i) => !axes.includes(i)) }];
    },
  },
  Unsqueeze: {
    attrs: {},
    infer: (c) => {
      const x = need(c, 0);
      const axes = constOf(c, 1, 'axes');
      const rank = x.shape.length + axes.length;
      const set = new Set(axes.map((a) => normAxis(a, rank, c.node)));
      const out: Shape = [];
      let k = 0;
      for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : x.shape[k++]);
      return [{ dtype: x.dtype, shape: out }];
    },
  },
  Expand: {
    attrs: {},
    infer: (c) => [
      { dtype: need(c, 0).dtype, shape: broadcast([need(c, 0).shape, constOf(c, 1, 'shape')], `${c.node} (Expand)`) },
    ],
  },
  Concat: {
    attrs: { axis: 'int' },
    infer: (c) => {
      const ins = c.inputs.filter((v): v is Value => !!v);
      const axis = normAxis(c.attr('axis', 0), ins[0].shape.length, `${c.node} (Concat)`);
      const out = [...ins[0].shape];
      for (const v of ins.slice(1)) {
        if (v.shape.length !== out.length || v.dtype !== ins[0].dtype)
          throw new Error(
            `${c.node} (Concat): ${v.name} ${v.dtype}${fmtShape(v.shape)} does not match ${ins[0].dtype}${fmtShape(ins[0].shape)}`,
          );
        v.shape.forEach((d, i) => {
          if (i !== axis && !dimEq(d, out[i]))
            throw new Error(`${c.node} (Concat): dim ${i} differs (${d} vs ${out[i]})`);
        });
        out[axis] = dimAdd(out[axis], v.shape[axis]);
      }
      return [{ dtype: ins[0].dtype, shape: out }];
    },
  },
  Split: {
    attrs: { axis: 'int', num_outputs: 'int' },
    infer: (c) => {
      const x = need(c, 0);
      const axis = normAxis(c.attr('axis', 0), x.shape.length, `${c.node} (Split)`);
      const sizes = c.inputs[1] ? c.constInts(1) : undefined;
      return Array.from({ length: c.nOut }, (_, i) => {
        const s = [...x.shape];
        if (sizes) s[axis] = sizes[i];
        else {
          const q = dimDiv(x.shape[axis], c.nOut);
          if (q === undefined) throw new Error(`${c.node} (Split): dim ${x.shape[axis]} does not split into ${c.nOut}`);
          s[axis] = q;
        }
        return { dtype: x.dtype, shape: s };
      });
    },
  },
  Slice: { attrs: {}, infer: (c) => [{ dtype: need(c, 0).dtype, shape: sliceShape(c) }] },
  Gather: {
    attrs: { axis: 'int' },
    infer: (c) => {
      const x = need(c, 0),
        idx = need(c, 1);
      if (idx.dtype !== 'int64' && idx.dtype !== 'int32')
        throw new Error(`${c.node} (Gather): indices must be int64 or int32, got ${idx.dtype}`);
      const axis = normAxis(c.attr('axis', 0), x.shape.length, `${c.node} (Gather)`);
      return [{ dtype: x.dtype, shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)] }];
    },
  },
  GatherElements: {
    attrs: { axis: 'int' },
    infer: (c) => {
      const x = need(c, 0),
        idx = need(c, 1);
      if (idx.shape.length !== x.shape.length)
        throw new Error(
          `${c.node} (GatherElements): indices ${fmtShape(idx.shape)} must have data's rank ${x.shape.length}`,
        );
      return [{ dtype: x.dtype, shape: idx.shape }];
    },
  },
  ScatterND: { attrs: { reduction: 'string' }, infer: same },
  ScatterElements: { attrs: { axis: 'int', reduction: 'string' }, infer: same },
  Cast: {
    attrs: { to: 'int' },
    infer: (c) => [{ dtype: dtypeFromOnnx(c.attr('to', 1)), shape: need(c, 0).shape }],
  },
  Dropout: {
    attrs: { seed: 'int' },
    outputs: 1,
    infer: (c) => [
      { dtype: need(c, 0).dtype, shape: need(c, 0).shape },
      { dtype: 'bool', shape: need(c, 0).shape },
    ],
  },
  SoftmaxCrossEntropyLoss: {
    attrs: { reduction: 'string', ignore_index: 'int' },
    outputs: 1,
    infer: (c) => {
      const x = need(c, 0),
        y = need(c, 1);
      if (x.shape.length < 2)
        throw new Error(`${c.node} (SoftmaxCrossEntropyLoss): scores must be [N, C, ...], got ${fmtShape(x.shape)}`);
      const want = [x.shape[0], ...x.shape.slice(2)];
      if (y.shape.length !== want.length || !y.shape.every((d, i) => dimEq(d, want[i]))) {
        throw new Error(
          `${c.node} (SoftmaxCrossEntropyLoss): labels ${fmtShape(y.shape)} do not match scores ${fmtShape(x.shape)} (expected ${fmtShape(want)})`,
        );
      }
      if (y.dtype !== 'int64' && y.dtype !== 'int32')
        throw new Error(`${c.node} (SoftmaxCrossEntropyLoss): labels must be int64 or int32, got ${y.dtype}`);
      const red = c.attr('reduction', 'mean');
      return [
        { dtype: x.dtype, shape: red === 'none' ? y.shape : [] },
        { dtype: x.dtype, shape: x.shape },
      ];
    },
  },
  Shape: {
    attrs: { start: 'int', end: 'int' },
    infer: (c) => {
      const r = need(c, 0).shape.length;
      const s = normClamp(c.attr('start', 0), r),
        e = normClamp(c.attr('end', r), r);
      return [{ dtype: 'int64', shape: [Math.max(0, e - s)] }];
    },
  },
  ConstantOfShape: {
    attrs: { value: 'tensor' },
    infer: (c) => {
      const v = c.attr<Attr>('value', 0);
      const dtype = typeof v === 'object' && !Array.isArray(v) ? v.dtype : 'float32';
      const s = c.constInts(0);
      return [{ dtype, shape: s ?? [`${c.node}_dim`] }];
    },
  },
  Range: { attrs: {}, infer: (c) => [{ dtype: need(c, 0).dtype, shape: [`${c.node}_len`] }] },
  Pad: {
    attrs: { mode: 'string' },
    infer: (c) => {
      const x = need(c, 0);
      const pads = c.constInts(1);
      if (!pads) return [{ dtype: x.dtype, shape: x.shape.map((_, i) => `${c.node}_dim${i}` as Dim) }];
      const axes = c.inputs[3]
        ? constOf(c, 3, 'axes').map((a) => normAxis(a, x.shape.length, c.node))
        : x.shape.map((_, i) => i);
      const out = [...x.shape];
      axes.forEach((a, i) => {
        out[a] = dimAdd(dimAdd(out[a], pads[i]), pads[i + axes.length]);
      });
      return [{ dtype: x.dtype, shape: out }];
    },
  },
  Trilu: { attrs: { upper: 'int' }, infer: same },
  CumSum: { attrs: { exclusive: 'int', reverse: 'int' }, infer: same },
};

const dimMinus = (d: Dim, k: number): Dim => (k === 0 ? d : `${d}-${k}`);

function normClamp(v: number, r: number): number {
  return Math.min(Math.max(v < 0 ? v + r : v, 0), r);
}

export { dimMul };
