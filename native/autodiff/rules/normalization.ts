// Gradient rules of LayerNormalization and SimplifiedLayerNormalization (RMSNorm). Both reuse the statistics the
// forward pass saved (mean, 1/σ) instead of recomputing them.
import { defineRule } from '../registry.js';
import { cast, mul, reduceKeep, sub, sumTo } from '../emit.js';
import { normAxis } from '../../onnx/shape.js';

defineRule('LayerNormalization', (c) => {
  const { g } = c;
  const x = c.x(0),
    dy = c.dy[0]!;
  const axis = normAxis(c.attr('axis', -1), x.shape.length, c.node.name);
  const axes = x.shape.map((_, i) => i).filter((i) => i >= axis);
  const mean = cast(g, c.y(1), x.dtype),
    inv = cast(g, c.y(2), x.dtype);
  const xhat = mul(g, sub(g, x, mean), inv);
  let dx;
  if (c.needs[0]) {
    const gy = mul(g, dy, c.x(1));
    const m1 = reduceKeep(g, gy, axes, 'ReduceMean');
    const m2 = reduceKeep(g, mul(g, gy, xhat), axes, 'ReduceMean');
    dx = mul(g, inv, sub(g, sub(g, gy, m1), mul(g, xhat, m2)));
  }
  const dScale = c.needs[1] ? sumTo(g, mul(g, dy, xhat), c.x(1)) : undefined;
  const dBias = c.has(2) && c.needs[2] ? sumTo(g, dy, c.x(2)) : undefined;
  return [dx, dScale, dBias];
});

defineRule('SimplifiedLayerNormalization', (c) => {
  const { g } = c;
  const x = c.x(0),
    dy = c.dy[0]!;
  const axis = normAxis(c.attr('axis', -1), x.shape.length, c.node.name);
  const axes = x.shape.map((_, i) => i).filter((i) => i >= axis);
  const inv = cast(g, c.y(1), x.dtype);
  const xhat = mul(g, x, inv);
  let dx;
  if (c.needs[0]) {
    const gy = mul(g, dy, c.x(1));
    const m = reduceKeep(g, mul(g, gy, xhat), axes, 'ReduceMean');
    dx = mul(g, inv, sub(g, gy, mul(g, xhat, m)));
  }
  return [dx, c.needs[1] ? sumTo(g, mul(g, dy, xhat), c.x(1)) : undefined];
});
