// Gradient rules of shape ops: each is the adjoint of its forward (reshape back, inverse permutation, split ↔ concat,
// slice ↔ pad, gather ↔ scatter-add).
import type { Value } from '../../onnx/graph.js';
import { defineRule } from '../registry.js';
import { add, dimOf, ints, reshapeLike, sub, sumTo, zerosLike } from '../emit.js';
import { normAxis } from '../../onnx/shape.js';

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

// Gather's adjoint scatters-adds the gradient rows into zeros (an embedding's gradient, without a one-hot).
defineRule('Gather', (c) => {
  const { g } = c;
  const data = c.x(0),
    idx0 = c.x(1),
    dy = c.dy[0]!;
  const rank = data.shape.length;
  const axis = normAxis(c.attr('axis', 0), rank, c.node.name);
  const q = idx0.shape.length;
  // Negative indices count from the end, as Gather allows.
  // A scalar, so that a scalar index stays a scalar.
  const d = data.shape[axis];
  const dimA =
    typeof d === 'number' ? g.constant(d, 'int64', []) : g.op1('Squeeze', [dimOf(g, data, axis), ints(g, [0])]);
  const dimCast = idx0.dtype === 'int64' ? dimA : g.op1('Cast', [dimA], { to: 6 });
  const zeroI = g.constant(0, idx0.dtype, []);
  const idx = g.op1('Where', [g.op1('Less', [idx0, zeroI]), g.op1('Add', [idx0, dimCast]), idx0]);
  const idxU = g.op1('Unsqueeze', [idx, ints(g, [-1])]);
  if (axis === 0) return [g.op1('ScatterND', [zerosLike(g, data), idxU, dy], { reduction: 'add' }), undefined];
  const pre = Array.from({ length: axis }, (_, i) => i);
  const idxDims = Array.from({ length: q }, (_, i) => axis + i);
  const post = Array.from({ length: rank - axis - 1 }, (_, i) => axis + q + i);
  const dyPerm = g.op1('Transpose', [dy], { perm: [...idxDims, ...pre, ...post] });
  const dataPerm = [axis, ...pre, ...post.map((p) => p - q + 1)];
  const zeros = g.op1('Transpose', [zerosLike(g, data)], { perm: dataPerm });
  const scattered = g.op1('ScatterND', [zeros, idxU, dyPerm], { reduction: 'add' });
  const inv = new Array<number>(rank);
  dataPerm.forEach((p, i) => {
    inv[p] = i;
  });
  return [g.op1('Transpose', [scattered], { perm: inv }), undefined];
});
