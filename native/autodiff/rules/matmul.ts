// Gradient rules of MatMul, Gemm and FusedMatMul. Transposes are folded into the products (transA/transB), so a
// frozen weight is never copied transposed; a 2-D weight's gradient is one Gemm over the flattened batch.
import type { Graph, Value } from '../../onnx/graph.js';
import { defineRule } from '../registry.js';
import { ints, mulScalar, product, sumTo } from '../emit.js';

function flat2d(g: Graph, v: Value): Value {
  const last = v.shape[v.shape.length - 1];
  if (v.shape.length === 2) return v;
  if (typeof last !== 'number') throw new Error(`matmul gradient: last dim of ${v.name} must be static`);
  return g.op1('Reshape', [v, ints(g, [-1, last])]);
}

function gemm(g: Graph, a: Value, b: Value, transA: number, transB: number, alpha = 1): Value {
  const attrs: Record<string, number> = {};
  if (transA) attrs.transA = 1;
  if (transB) attrs.transB = 1;
  if (alpha !== 1) attrs.alpha = alpha;
  return g.op1('Gemm', [a, b], attrs);
}

/** Y = alpha · op(A) @ op(B) for A [..., M, K] and B [..., K, N] (op = optional transpose of the last two dims). */
function productGrads(
  g: Graph,
  A: Value,
  B: Value,
  dy: Value,
  transA: number,
  transB: number,
  alpha: number,
  needs: boolean[],
): (Value | undefined)[] {
  if (A.shape.length < 2 || B.shape.length < 2)
    throw new Error(`matmul gradient: 1-D operands (${A.name}, ${B.name}) are not supported`);
  let dA: Value | undefined, dB: Value | undefined;
  if (needs[0]) {
    dA = transA ? product(g, B, dy, transB, 1, alpha) : product(g, dy, B, 0, transB ? 0 : 1, alpha);
    dA = sumTo(g, dA, A);
  }
  if (needs[1]) {
    if (B.shape.length === 2 && !transA) {
      // Weight gradient: flatten the batch and let one Gemm contract it.
      const A2 = flat2d(g, A),
        dy2 = flat2d(g, dy);
      dB = transB ? gemm(g, dy2, A2, 1, 0, alpha) : gemm(g, A2, dy2, 1, 0, alpha);
    } else {
      dB = transB ? product(g, dy, A, 1, transA, alpha) : product(g, A, dy, transA ? 0 : 1, 0, alpha);
      dB = sumTo(g, dB, B);
    }
  }
  return [dA, dB];
}

defineRule('MatMul', (c) => productGrads(c.g, c.x(0), c.x(1), c.dy[0]!, 0, 0, 1, c.needs));

defineRule(
  'FusedMatMul',
  (c) =>
    productGrads(c.g, c.x(0), c.x(1), c.dy[0]!, c.attr('transA', 0), c.attr('transB', 0), c.attr('alpha', 1), c.needs),
  'com.microsoft',
);

defineRule('Gemm', (c) => {
  const { g } = c;
  const [A, B] = [c.x(0), c.x(1)];
  const dy = c.dy[0]!;
  const tA = c.attr('transA', 0),
    tB = c.attr('transB', 0),
    alpha = c.attr('alpha', 1),
    beta = c.attr('beta', 1);
  let dA, dB, dC;
  if (c.needs[0]) dA = tA ? gemm(g, B, dy, tB, 1, alpha) : gemm(g, dy, B, 0, tB ? 0 : 1, alpha);
  if (c.needs[1]) dB = tB ? gemm(g, dy, A, 1, tA, alpha) : gemm(g, A, dy, tA ? 0 : 1, 0, alpha);
  if (c.has(2) && c.needs[2]) dC = sumTo(g, mulScalar(g, dy, beta), c.x(2));
  return [dA, dB, dC];
});
