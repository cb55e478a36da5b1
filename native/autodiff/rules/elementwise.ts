// Gradient rules of elementwise arithmetic and activations.
import { defineRule } from '../registry.js';
import { add, cast, div, mul, mulScalar, narrowSource, neg, scalar, sub, sumTo } from '../emit.js';

defineRule('Identity', (c) => [c.dy[0]]);
defineRule('Neg', (c) => [neg(c.g, c.dy[0]!)]);

defineRule('Add', (c) => [
  c.needs[0] ? sumTo(c.g, c.dy[0]!, c.x(0)) : undefined,
  c.needs[1] ? sumTo(c.g, c.dy[0]!, c.x(1)) : undefined,
]);

defineRule('Sub', (c) => [
  c.needs[0] ? sumTo(c.g, c.dy[0]!, c.x(0)) : undefined,
  c.needs[1] ? sumTo(c.g, neg(c.g, c.dy[0]!), c.x(1)) : undefined,
]);

defineRule('Sum', (c) => c.node.inputs.map((_, i) => (c.needs[i] ? sumTo(c.g, c.dy[0]!, c.x(i)) : undefined)));

defineRule('Mul', (c) => {
  const { g } = c;
  const dy = c.dy[0]!;
  return [
    c.needs[0] ? sumTo(g, mul(g, dy, c.x(1)), c.x(0)) : undefined,
    c.needs[1] ? sumTo(g, mul(g, dy, c.x(0)), c.x(1)) : undefined,
  ];
});

defineRule('Div', (c) => {
  const { g } = c;
  const dy = c.dy[0]!;
  const da = div(g, dy, c.x(1));
  return [
    c.needs[0] ? sumTo(g, da, c.x(0)) : undefined,
    // d(a/b)/db = -(a/b)/b, reusing the output instead of squaring b.
    c.needs[1] ? sumTo(g, neg(g, mul(g, da, c.y(0))), c.x(1)) : undefined,
  ];
});

defineRule('Pow', (c) => {
  const { g } = c;
  const dy = c.dy[0]!;
  const [a, b] = [c.x(0), c.x(1)];
  let da;
  if (c.needs[0]) {
    const bv = g.constValue(b);
    if (bv && bv.length === 1 && bv[0] === 2) da = mul(g, dy, mulScalar(g, a, 2));
    else {
      const bm1 = sub(g, b, scalar(g, 1, b.dtype));
      da = mul(g, mul(g, dy, b), g.op1('Pow', [a, bm1]));
    }
  }
  const db = c.needs[1] ? sumTo(g, mul(g, mul(g, dy, c.y(0)), g.op1('Log', [a])), b) : undefined;
  return [da ? sumTo(g, da, a) : undefined, db];
});

defineRule('Sqrt', (c) => [div(c.g, mulScalar(c.g, c.dy[0]!, 0.5), c.y(0))]);
defineRule('Exp', (c) => [mul(c.g, c.dy[0]!, c.y(0))]);
defineRule('Log', (c) => [div(c.g, c.dy[0]!, c.x(0))]);
defineRule('Reciprocal', (c) => [neg(c.g, mul(c.g, c.dy[0]!, mul(c.g, c.y(0), c.y(0))))]);

defineRule('Tanh', (c) => {
  const { g } = c;
  const y = c.y(0);
  return [mul(g, c.dy[0]!, sub(g, scalar(g, 1, y.dtype), mul(g, y, y)))];
});

defineRule('Sigmoid', (c) => {
  const { g } = c;
  const y = c.y(0);
  return [mul(g, c.dy[0]!, mul(g, y, sub(g, scalar(g, 1, y.dtype), y)))];
});

defineRule('Erf', (c) => {
  const { g } = c;
  const x = c.x(0);
  const e = g.op1('Exp', [neg(g, mul(g, x, x))]);
  return [mul(g, c.dy[0]!, mulScalar(g, e, 2 / Math.sqrt(Math.PI)))];
});

defineRule('Relu', (c) => {
  const { g } = c;
  const x = c.x(0);
  const pos = g.op1('Greater', [x, scalar(g, 0, x.dtype)]);
  return [g.op1('Where', [pos, c.dy[0]!, scalar(g, 0, x.dtype)])];
});

defineRule('Where', (c) => {
  const { g } = c;
  const dy = c.dy[0]!;
  const zero = scalar(g, 0, dy.dtype);
  return [
    undefined,
    c.needs[1] ? sumTo(g, g.op1('Where', [c.x(0), dy, zero]), c.x(1)) : undefined,
    c.needs[2] ? sumTo(g, g.op1('Where', [c.x(0), zero, dy]), c.x(2)) : undefined,
  ];
});

// A gradient that is itself a float32 copy of a float16 one (the loss's, see softmax.ts) is taken back as it was.
defineRule('Cast', (c) => [narrowSource(c.g, c.dy[0]!, c.x(0).dtype) ?? cast(c.g, c.dy[0]!, c.x(0).dtype)]);

// Training dropout: the mask the forward pass drew is reused; inference mode is the identity.
defineRule('Dropout', (c) => {
  const { g } = c;
  const dy = c.dy[0]!;
  const training = c.has(2) ? g.constValue(c.x(2)) : [0];
  if (training && training[0] === 0) return [dy];
  const mask = cast(g, c.y(1), dy.dtype);
  const ratio = c.has(1) ? c.x(1) : scalar(g, 0.5, dy.dtype);
  const keep = sub(g, scalar(g, 1, ratio.dtype), ratio);
  return [div(g, mul(g, dy, mask), cast(g, keep, dy.dtype))];
});

// Exact GELU: x·Φ(x); derivative Φ(x) + x·φ(x). Tanh form: 0.5·x·(1 + tanh(u)), u = √(2/π)(x + 0.044715x³).
function geluGrad(
  g: Parameters<typeof add>[0],
  x: Parameters<typeof add>[1],
  dy: Parameters<typeof add>[1],
  approximate: string,
) {
  const one = scalar(g, 1, x.dtype);
  if (approximate === 'tanh') {
    const k = Math.sqrt(2 / Math.PI);
    const x2 = mul(g, x, x);
    const inner = add(g, one, mulScalar(g, x2, 0.044715));
    const t = g.op1('Tanh', [mulScalar(g, mul(g, x, inner), k)]);
    const dInner = mulScalar(g, add(g, one, mulScalar(g, x2, 3 * 0.044715)), k);
    const sech2 = sub(g, one, mul(g, t, t));
    const d = add(g, mulScalar(g, add(g, one, t), 0.5), mulScalar(g, mul(g, mul(g, x, sech2), dInner), 0.5));
    return mul(g, dy, d);
  }
  const cdf = mulScalar(g, add(g, one, g.op1('Erf', [mulScalar(g, x, Math.SQRT1_2)])), 0.5);
  const pdf = mulScalar(g, g.op1('Exp', [mulScalar(g, mul(g, x, x), -0.5)]), 1 / Math.sqrt(2 * Math.PI));
  return mul(g, dy, add(g, cdf, mul(g, x, pdf)));
}

defineRule('Gelu', (c) => [geluGrad(c.g, c.x(0), c.dy[0]!, c.attr('approximate', 'none'))]);

defineRule(
  'FastGelu',
  (c) => {
    const { g } = c;
    const x = c.has(1) ? add(g, c.x(0), c.x(1)) : c.x(0);
    const d = geluGrad(g, x, c.dy[0]!, 'tanh');
    return [c.needs[0] ? d : undefined, c.has(1) && c.needs[1] ? sumTo(g, d, c.x(1)) : undefined];
  },
  'com.microsoft',
);

// QuickGelu(alpha) = x·σ(αx); with alpha = 1 it is SiLU (Swish), as Llama's MLP uses. Its derivative
// σ(αx) + αxσ(αx)(1 − σ(αx)) is σ(αx)·(1 + α·x·σ(−αx)), and x·σ(−αx) is QuickGelu(−alpha): one pass, and no
// cancellation where x − y would have it (large x). Five kernels over [batch, seq, ffn] with the incoming gradient's
// product, each reading one or two of them; the textbook form takes six.
defineRule(
  'QuickGelu',
  (c) => {
    const { g } = c;
    const x = c.x(0);
    const alpha = c.attr('alpha', 1.702);
    const s = g.op1('Sigmoid', [mulScalar(g, x, alpha)]);
    const rest = g.op1('QuickGelu', [x], { alpha: -alpha }); // x·σ(−αx) = x − y
    const d = mul(g, s, add(g, scalar(g, 1, x.dtype), mulScalar(g, rest, alpha)));
    return [mul(g, c.dy[0]!, d)];
  },
  'com.microsoft',
);
