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

// RMSNorm: y = w ⊙ x̂, x̂ = x·r, r = 1/rms(x). With g = dy ⊙ w, dx = r·g − x·(r³·mean(g ⊙ x)): x̂ itself is never
// made (it is only needed for the scale's gradient), which leaves six passes over [batch, seq, hidden] instead of
// eight. The per-row coefficient r³·mean(…) is formed in float32 ([rows, 1]; r³ alone can exceed float16's range).
defineRule('SimplifiedLayerNormalization', (c) => {
  const { g } = c;
  const x = c.x(0),
    dy = c.dy[0]!;
  const axis = normAxis(c.attr('axis', -1), x.shape.length, c.node.name);
  const axes = x.shape.map((_, i) => i).filter((i) => i >= axis);
  const r = c.y(1); // float32 (float64 for float64 input)
  let dx;
  if (c.needs[0]) {
    const gy = mul(g, dy, c.x(1));
    const m = cast(g, reduceKeep(g, mul(g, gy, x), axes, 'ReduceMean'), r.dtype);
    const coef = cast(g, mul(g, g.op1('Pow', [r, g.constant(3, r.dtype, [])]), m), x.dtype);
    dx = sub(g, mul(g, gy, cast(g, r, x.dtype)), mul(g, x, coef));
  }
  return [dx, c.needs[1] ? sumTo(g, mul(g, dy, mul(g, x, cast(g, r, x.dtype))), c.x(1)) : undefined];
});
