// Gradient rule of onnxruntime's rotary embedding (com.microsoft RotaryEmbedding). Each pair (x₁, x₂) of a head is
// turned by its position's angle: y₁ = x₁·cos − x₂·sin, y₂ = x₂·cos + x₁·sin — linear in x, and its transpose is the
// same op with the sine negated (a turn back by the same angle), so the gradient is one fused kernel too.
import { defineRule } from '../registry.js';
import { neg } from '../emit.js';

defineRule(
  'RotaryEmbedding',
  (c) => {
    const { g } = c;
    if (c.needs[2] || c.needs[3])
      throw new Error(`${c.node.name} (RotaryEmbedding): the cos and sin caches are not trainable`);
    const dx = c.needs[0]
      ? g.op1('RotaryEmbedding', [c.dy[0]!, c.x(1), c.x(2), neg(g, c.x(3))], { ...c.node.attrs })
      : undefined;
    return [dx, undefined, undefined, undefined];
  },
  'com.microsoft',
);
