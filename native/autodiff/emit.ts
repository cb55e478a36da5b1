// Small graph-building helpers shared by gradient rules.
import { DTYPES, type DType } from '../onnx/dtype.js';
import type { Graph, Value } from '../onnx/graph.js';
import { type Shape, dimEq, isStatic, normAxis } from '../onnx/shape.js';
import { foldDim } from './dims.js';

/** A scalar constant; a float16/bfloat16 one is a cast float32 constant (onnxruntime folds it when it loads). */
export function scalar(g: Graph, v: number, dtype: DType): Value {
  if (dtype !== 'float16' && dtype !== 'bfloat16') return g.constant(v, dtype, []);
  return g.op1('Cast', [g.constant(v, 'float32', [])], { to: DTYPES[dtype].onnx });
}
export const ints = (g: Graph, v: number[]): Value => g.constant(v, 'int64', [v.length]);

export const add = (g: Graph, a: Value, b: Value): Value => g.op1('Add', [a, b]);
export const sub = (g: Graph, a: Value, b: Value): Value => g.op1('Sub', [a, b]);
export const mul = (g: Graph, a: Value, b: Value): Value => g.op1('Mul', [a, b]);
export const div = (g: Graph, a: Value, b: Value): Value => g.op1('Div', [a, b]);
export const neg = (g: Graph, a: Value): Value => g.op1('Neg', [a]);
export const mulScalar = (g: Graph, a: Value, k: number): Value => (k === 1 ? a : mul(g, a, scalar(g, k, a.dtype)));

/** op(a)·op(b)·alpha (op: an optional transpose of the last two dims): MatMul, or FusedMatMul when it needs one. */
export function product(g: Graph, a: Value, b: Value, transA = 0, transB = 0, alpha = 1): Value {
  if (!transA && !transB && alpha === 1) return g.op1('MatMul', [a, b]);
  const attrs: Record<string, number> = {};
  if (transA) attrs.transA = 1;
  if (transB) attrs.transB = 1;
  if (alpha !== 1) attrs.alpha = alpha;
  return g.op1('FusedMatMul', [a, b], attrs);
}

export function cast(g: Graph, v: Value, to: DType): Value {
  return v.dtype === to ? v : g.op1('Cast', [v], { to: DTYPES[to].onnx });
}

/** Ops onnxruntime runs as views of their input: they change a shape, never a value. */
const VIEWS = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity']);
/** Casts that lose nothing: every value of the narrow type is one of the wide type's. */
const EXACT_WIDENING: Partial<Record<DType, DType[]>> = {
  float16: ['float32', 'float64'],
  bfloat16: ['float32', 'float64'],
  float32: ['float64'],
};

/**
 * The `to`-typed value of which `v` is an exact widening (a Cast up, then only views), with v's shape; undefined when
 * `v` is not one. Casting v down to `to` is then reading that value again, with nothing lost.
 */
export function narrowSource(g: Graph, v: Value, to: DType): Value | undefined {
  let name = v.name;
  let viewed = false;
  for (let k = g.nodes.length - 1; k >= 0; k--) {
    const n = g.nodes[k];
    if (!n.outputs.includes(name)) continue;
    if (VIEWS.has(n.op)) {
      viewed = true;
      name = n.inputs[0];
      continue;
    }
    const from = n.op === 'Cast' ? g.value(n.inputs[0]) : undefined;
    if (!from || from.dtype !== to || !EXACT_WIDENING[to]?.includes(g.value(name).dtype)) return undefined;
    return viewed ? reshapeLike(g, from, v) : from;
  }
  return undefined;
}

/** The float16 or bfloat16 value of which `v` is an exact float32 copy (see narrowSource), if any. */
export function halfSource(g: Graph, v: Value): Value | undefined {
  return narrowSource(g, v, 'float16') ?? narrowSource(g, v, 'bfloat16');
}

/**
 * Shape(v) as an int64 tensor: a constant when the shape is static; else each symbolic dim is computed from the
 * graph's inputs that have its symbols (batch, seq, … — "seq-1" as seq − 1), which are alive for the whole step, so that
 * a gradient needing only `v`'s shape does not keep `v` alive until then. Dims no input explains read `v`'s.
 */
export function shapeOf(g: Graph, v: Value): Value {
  if (isStatic(v.shape)) return ints(g, v.shape);
  const parts: Value[] = [];
  let run: number[] = [];
  v.shape.forEach((d, k) => {
    if (typeof d === 'number') {
      run.push(d);
      return;
    }
    if (run.length) parts.push(ints(g, run));
    run = [];
    parts.push(dimFromInputs(g, d) ?? g.op1('Shape', [v], { start: k, end: k + 1 }));
  });
  if (run.length) parts.push(ints(g, run));
  return parts.length === 1 ? parts[0] : g.op1('Concat', parts, { axis: 0 });
}

/** A symbolic dim as an int64 [1] tensor computed from graph inputs' shapes, or undefined when one has no source. */
function dimFromInputs(g: Graph, d: string): Value | undefined {
  const sources = new Map<string, [string, number]>();
  for (const i of g.inputs)
    g.value(i).shape.forEach((s, k) => {
      if (typeof s === 'string' && /^[A-Za-z_]\w*$/.test(s) && !sources.has(s)) sources.set(s, [i, k]);
    });
  const ops = { '+': 'Add', '-': 'Sub', '*': 'Mul', '/': 'Div' } as const;
  return foldDim<Value>(
    d,
    (t) => {
      if (/^\d+$/.test(t)) return ints(g, [Number(t)]);
      const src = sources.get(t);
      return src ? g.op1('Shape', [src[0]], { start: src[1], end: src[1] + 1 }) : undefined;
    },
    (op, a, b) => g.op1(ops[op], [a, b]),
  );
}

/**
 * Reshapes `x` to the shape of `like` (element counts equal). The target shape is a constant where it can be: 0 copies
 * a dim of `x` at the same place, −1 stands for one dim left over. Only otherwise is it read from `like` at run time,
 * which keeps a forward value alive into the backward pass just for its shape.
 */
export function reshapeLike(g: Graph, x: Value, like: Value): Value {
  if (x.shape.length === like.shape.length && x.shape.every((d, i) => dimEq(d, like.shape[i]))) return x;
  const dims = like.shape.map((d, i) =>
    typeof d === 'number' ? d : i < x.shape.length && dimEq(d, x.shape[i]) ? 0 : undefined,
  );
  const open = dims.filter((d) => d === undefined).length;
  // A real 0 in the target would read as "copy": such shapes take the run-time way.
  const shape =
    open <= 1 && !like.shape.includes(0)
      ? ints(
          g,
          dims.map((d) => d ?? -1),
        )
      : shapeOf(g, like);
  return g.op1('Reshape', [x, shape], {}, { infos: [{ dtype: x.dtype, shape: like.shape }] });
}

/** Expands `x` to the shape of `like`; dims `x` already has are 1 in the target (Expand broadcasts). */
export function expandLike(g: Graph, x: Value, like: Value): Value {
  const lead = like.shape.length - x.shape.length;
  const fromX = like.shape.map((d, i) => i >= lead && dimEq(d, x.shape[i - lead]));
  const known = like.shape.every((d, i) => typeof d === 'number' || fromX[i]);
  const shape = known
    ? ints(
        g,
        like.shape.map((d, i) => (fromX[i] ? 1 : (d as number))),
      )
    : shapeOf(g, like);
  return g.op1('Expand', [x, shape], {}, { infos: [{ dtype: x.dtype, shape: like.shape }] });
}

/** Sums a broadcast gradient back to the shape of the input it flowed from. */
export function sumTo(g: Graph, grad: Value, target: Value): Value {
  const T: Shape = target.shape,
    G: Shape = grad.shape;
  const lead = G.length - T.length;
  if (lead < 0) throw new Error(`sumTo: gradient ${grad.name} has lower rank than ${target.name}`);
  const axes: number[] = [];
  for (let i = 0; i < G.length; i++) {
    if (i < lead) axes.push(i);
    else if (T[i - lead] === 1 && G[i] !== 1) axes.push(i);
    else if (!dimEq(T[i - lead], G[i]))
      throw new Error(`sumTo: gradient ${grad.name} [${G}] does not broadcast to ${target.name} [${T}]`);
  }
  if (axes.length === 0) return grad;
  const keep = axes.filter((a) => a >= lead);
  const red = g.op1('ReduceSum', [grad, ints(g, axes)], { keepdims: 0 });
  return keep.length ? reshapeLike(g, red, target) : red;
}

/** ReduceSum over axes keeping dims. */
export function reduceKeep(g: Graph, x: Value, axes: number[], op = 'ReduceSum'): Value {
  return g.op1(
    op,
    [
      x,
      ints(
        g,
        axes.map((a) => normAxis(a, x.shape.length, op)),
      ),
    ],
    { keepdims: 1 },
  );
}

/** Zeros with the shape of `like` (of its dtype unless another is given). */
export function zerosLike(g: Graph, like: Value, dtype: DType = like.dtype): Value {
  return g.op1(
    'ConstantOfShape',
    [shapeOf(g, like)],
    {
      value: {
        dtype,
        shape: [1],
        data:
          dtype === 'float64'
            ? new Float64Array(1)
            : dtype === 'float16' || dtype === 'bfloat16'
              ? new Uint16Array(1)
              : new Float32Array(1),
      },
    },
    { infos: [{ dtype, shape: like.shape }] },
  );
}

/** Gather(Shape(v), axis) as a 1-element int64 tensor. */
export function dimOf(g: Graph, v: Value, axis: number): Value {
  const d = v.shape[axis];
  if (typeof d === 'number') return ints(g, [d]);
  return g.op1('Shape', [v], { start: axis, end: axis + 1 });
}
