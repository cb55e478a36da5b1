// Gradient rules of shape ops: each is the adjoint of its forward (reshape back, inverse permutation, split ↔ concat,
// slice ↔ pad, gather ↔ scatter-add).
import type { Graph, Value } from '../../onnx/graph.js';
import { defineRule } from '../registry.js';
import { add, cast, dimOf, expandLike, ints, reshapeLike, sub, sumTo, zerosLike } from '../emit.js';
import { isStatic, normAxis } from '../../onnx/shape.js';

defineRule('Reshape', (c) => [reshapeLike(c.g, c.dy[0]!, c.x(0))]);
defineRule('Squeeze', (c) => [reshapeLike(c.g, c.dy[0]!, c.x(0))]);
defineRule('Unsqueeze', (c) => [reshapeLike(c.g, c.dy[0]!, c.x(0))]);
defineRule('Expand', (c) => [sumTo(c.g, c.dy[0]!, c.x(0))]);

defineRule('Transpose', (c) => {
  const rank = c.x(0).shape.length;
  const perm = c.attr<number[]>(
    'perm',
    Array.from({ length: rank }, (_, i) => rank - 1 - i),
  );
  const inv = new Array<number>(rank);
  perm.forEach((p, i) => {
    inv[p] = i;
  });
  return [c.g.op1('Transpose', [c.dy[0]!], { perm: inv })];
});

defineRule('Concat', (c) => {
  const { g } = c;
  const xs = c.node.inputs.map((_, i) => c.x(i));
  const axis = normAxis(c.attr('axis', 0), xs[0].shape.length, c.node.name);
  const dims = xs.map((x) => x.shape[axis]);
  const sizes = dims.every((d) => typeof d === 'number')
    ? ints(g, dims as number[])
    : g.op1(
        'Concat',
        xs.map((x) => dimOf(g, x, axis)),
        { axis: 0 },
      );
  const parts = g.op(
    'Split',
    [c.dy[0]!, sizes],
    { axis },
    { infos: xs.map((x) => ({ dtype: x.dtype, shape: x.shape })) },
  );
  return parts.map((p, i) => (c.needs[i] ? p : undefined));
});

defineRule('Split', (c) => {
  const { g } = c;
  const axis = c.attr('axis', 0);
  const parts = c.node.outputs.map((_, i) => c.dy[i] ?? zerosLike(g, c.y(i)));
  return [g.op1('Concat', parts, { axis }, { infos: [{ dtype: c.x(0).dtype, shape: c.x(0).shape }] })];
});

// Slice's adjoint pads the gradient with zeros back to the input's extent (unit steps only).
defineRule('Slice', (c) => {
  const { g } = c;
  const x = c.x(0);
  const rank = x.shape.length;
  const starts = g.constValue(c.x(1)),
    ends = g.constValue(c.x(2));
  const axes = c.has(3) ? g.constValue(c.x(3)) : starts?.map((_, i) => i);
  const steps = c.has(4) ? g.constValue(c.x(4)) : starts?.map(() => 1);
  if (!starts || !ends || !axes || !steps)
    throw new Error(`${c.node.name} (Slice): starts/ends/axes/steps must be constants for its gradient`);
  if (steps.some((s) => s !== 1))
    throw new Error(`${c.node.name} (Slice): no gradient rule for steps other than 1 (steps [${steps}])`);
  const before: Value[] = [],
    after: Value[] = [];
  axes.forEach((a0, i) => {
    const a = normAxis(a0, rank, c.node.name);
    const d = x.shape[a];
    if (typeof d === 'number') {
      const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
      const s = clamp(starts[i]),
        e = Math.max(clamp(ends[i]), s);
      before.push(ints(g, [s]));
      after.push(ints(g, [d - e]));
      return;
    }
    const dim = dimOf(g, x, a);
    const s = starts[i] >= 0 ? ints(g, [starts[i]]) : add(g, dim, ints(g, [starts[i]]));
    before.push(s);
    if (ends[i] >= 2 ** 31) after.push(ints(g, [0]));
    else if (ends[i] >= 0) after.push(sub(g, dim, ints(g, [ends[i]])));
    else after.push(ints(g, [-ends[i]]));
  });
  const pads = g.op1('Concat', [...before, ...after], { axis: 0 });
  return [
    g.op1(
      'Pad',
      [
        c.dy[0]!,
        pads,
        null,
        ints(
          g,
          axes.map((a) => normAxis(a, rank, c.node.name)),
        ),
      ],
      {},
      { infos: [{ dtype: x.dtype, shape: x.shape }] },
    ),
  ];
});

// Gather's adjoint scatter-adds the gradient rows into zeros (an embedding's gradient, without a one-hot). Which
// scatter depends on the dtype, so that the same graph runs on the CPU and on onnxruntime's CUDA provider (see
// cuda-kernels.ts): ScatterND(add) keeps its indices small ([n, 1]) but CUDA adds only float and float16 with it
// (scatter_nd_impl.cu: "element_type 11 not implemented" for double); ScatterElements(add) also adds double there
// (gather_elements_impl.cu), at the cost of an index tensor as large as the gradient, so it serves float64 only.
defineRule('Gather', (c) => {
  const { g } = c;
  const data = c.x(0),
    idx0 = c.x(1);
  const rank = data.shape.length;
  const axis = normAxis(c.attr('axis', 0), rank, c.node.name);
  // Negative indices count from the end, as Gather allows. A scalar, so that a scalar index stays a scalar.
  const d = data.shape[axis];
  const dimA =
    typeof d === 'number' ? g.constant(d, 'int64', []) : g.op1('Squeeze', [dimOf(g, data, axis), ints(g, [0])]);
  const dimCast = idx0.dtype === 'int64' ? dimA : g.op1('Cast', [dimA], { to: 6 });
  const idx = g.op1('Where', [
    g.op1('Less', [idx0, g.constant(0, idx0.dtype, [])]),
    g.op1('Add', [idx0, dimCast]),
    idx0,
  ]);
  // bfloat16 has no scatter-add on CUDA, and adding rows in bfloat16 would round away small ones: sum in float32.
  const acc = data.dtype === 'bfloat16' ? 'float32' : data.dtype;
  const dy = cast(g, c.dy[0]!, acc);
  const grad = acc === 'float64' ? scatterElementsAdd(g, data, axis, idx, dy) : scatterNdAdd(g, data, axis, idx, dy);
  return [cast(g, grad, data.dtype), undefined];
});

/** Σ dy rows into zeros shaped like `data` along `axis`, with ScatterND: the indexed axis is moved to the front. */
function scatterNdAdd(g: Graph, data: Value, axis: number, idx: Value, dy: Value): Value {
  const rank = data.shape.length,
    q = idx.shape.length;
  const idxU = g.op1('Unsqueeze', [idx, ints(g, [-1])]);
  const zeros = zerosLike(g, data, dy.dtype);
  if (axis === 0) return g.op1('ScatterND', [zeros, idxU, dy], { reduction: 'add' });
  const pre = Array.from({ length: axis }, (_, i) => i);
  const idxDims = Array.from({ length: q }, (_, i) => axis + i);
  const post = Array.from({ length: rank - axis - 1 }, (_, i) => axis + q + i);
  const dyPerm = g.op1('Transpose', [dy], { perm: [...idxDims, ...pre, ...post] });
  const dataPerm = [axis, ...pre, ...post.map((p) => p - q + 1)];
  const scattered = g.op1('ScatterND', [g.op1('Transpose', [zeros], { perm: dataPerm }), idxU, dyPerm], {
    reduction: 'add',
  });
  const inv = new Array<number>(rank);
  dataPerm.forEach((p, i) => {
    inv[p] = i;
  });
  return g.op1('Transpose', [scattered], { perm: inv });
}

/** The same sum with ScatterElements: dy's index dims are flattened into one, and the indices expanded to dy's shape. */
function scatterElementsAdd(g: Graph, data: Value, axis: number, idx: Value, dy: Value): Value {
  const rank = data.shape.length,
    q = idx.shape.length;
  const n = idx.shape.every((s) => typeof s === 'number')
    ? (idx.shape as number[]).reduce((a, b) => a * b, 1)
    : idx.shape.join('*');
  const flatShape = [...dy.shape.slice(0, axis), n, ...dy.shape.slice(axis + q)];
  const flatDims = isStatic(flatShape)
    ? ints(g, flatShape)
    : g.op1(
        'Concat',
        [
          ...(axis > 0 ? [g.op1('Shape', [dy], { start: 0, end: axis })] : []),
          ints(g, [-1]),
          ...(axis + q < dy.shape.length ? [g.op1('Shape', [dy], { start: axis + q })] : []),
        ],
        { axis: 0 },
      );
  const dyFlat = g.op1('Reshape', [dy, flatDims], {}, { infos: [{ dtype: dy.dtype, shape: flatShape }] });
  const ones = (k: number): number[] => Array.from({ length: k }, () => 1);
  const idxLine = g.op1(
    'Reshape',
    [idx, ints(g, [...ones(axis), -1, ...ones(rank - axis - 1)])],
    {},
    {
      infos: [{ dtype: idx.dtype, shape: [...ones(axis), n, ...ones(rank - axis - 1)] }],
    },
  );
  const idxFull = expandLike(g, idxLine, dyFlat);
  return g.op1('ScatterElements', [zerosLike(g, data, dy.dtype), idxFull, dyFlat], { axis, reduction: 'add' });
}
