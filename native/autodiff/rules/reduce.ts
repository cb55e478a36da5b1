// Gradient rules of reductions: the output gradient is broadcast back over the reduced axes.
import type { GradContext } from '../registry.js';
import { defineRule } from '../registry.js';
import { cast, div, expandLike, ints, mul, mulScalar } from '../emit.js';
import type { Value } from '../../onnx/graph.js';
import { normAxis } from '../../onnx/shape.js';

function reducedAxes(c: GradContext): number[] | undefined {
  const x = c.x(0);
  const axes = c.has(1) ? c.g.constValue(c.x(1)) : [];
  if (!axes) throw new Error(`${c.node.name} (${c.node.op}): axes must be a constant for its gradient`);
  if (axes.length === 0) return c.attr('noop_with_empty_axes', 0) ? undefined : x.shape.map((_, i) => i);
  return axes.map((a) => normAxis(a, x.shape.length, c.node.name));
}

/** dy broadcast to x's shape; `undefined` axes means the reduction was a no-op. */
function spread(c: GradContext): Value {
  const { g } = c;
  const x = c.x(0);
  let dy = c.dy[0]!;
  const axes = reducedAxes(c);
  if (!axes) return dy;
  if (c.attr('keepdims', 1) === 0) {
    const keepShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    dy =
      axes.length === x.shape.length
        ? g.op1('Reshape', [dy, ints(g, keepShape as number[])])
        : g.op1('Unsqueeze', [dy, ints(g, axes)]);
  }
  return expandLike(g, dy, x);
}

defineRule('ReduceSum', (c) => [spread(c)]);

defineRule('ReduceMean', (c) => {
  const { g } = c;
  const x = c.x(0);
  const axes = reducedAxes(c) ?? [];
  const spreadDy = spread(c);
  const dims = axes.map((a) => x.shape[a]);
  if (dims.every((d) => typeof d === 'number'))
    return [mulScalar(g, spreadDy, 1 / (dims as number[]).reduce((a, b) => a * b, 1))];
  // The count in int32: onnxruntime's CUDA provider has no int64 ReduceProd (it would run on the CPU, see cuda-kernels.ts).
  const counts = cast(g, g.op1('Gather', [g.op1('Shape', [x]), ints(g, axes)], { axis: 0 }), 'int32');
  const n = g.op1('ReduceProd', [counts], { keepdims: 0 });
  return [div(g, spreadDy, cast(g, n, x.dtype))];
});

defineRule('ReduceSumSquare', (c) => [mul(c.g, spread(c), mulScalar(c.g, c.x(0), 2))]);
