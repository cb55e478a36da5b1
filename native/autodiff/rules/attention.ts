// Gradient rule of onnxruntime's fused attention (com.microsoft MultiHeadAttention, self-attention form: query, key
// and value [batch, seq, heads·dh]). The forward kernel keeps nothing but its output (on CUDA it is flash attention:
// the S² scores never exist), so the backward pass makes the probabilities again from Q and K, as FlashAttention's
// backward does, and uses its row trick: with O = P·V, the softmax gradient's row sum Σ_j P_ij·dP_ij equals
// Σ_d dO_id·O_id, a [batch, heads, seq] value from the output instead of a pass over the S² probabilities.
//   P = softmax(scale·Q·Kᵀ + causal mask)   dV = Pᵀ·dO   dS = P ⊙ (dO·Vᵀ − rowsum(dO ⊙ O))
//   dQ = scale·dS·K   dK = scale·dSᵀ·Q
// Two passes over the S² scores and probabilities are all that is not a product (on CUDA): softmax(scores + mask) and
// P ⊙ (…). The mask is added where onnxruntime's BiasSoftmaxFusion makes one kernel of the Add and the Softmax, and the
// row sum is subtracted inside the product dO·Vᵀ (an extra column pair, [−rowsum] in dO and [1] in V).
import type { Graph, Value } from '../../onnx/graph.js';
import { dimEq } from '../../onnx/shape.js';
import { defineRule } from '../registry.js';
import { add, cast, ints, mul, neg, product, reduceKeep, scalar, shapeOf } from '../emit.js';

/** The most negative finite number of each float type: a masked score's probability is exactly 0. */
const LOWEST: Record<string, number> = {
  float16: -65504,
  bfloat16: -3.3895313892515355e38,
  float32: -3.4028234663852886e38,
  float64: -1.7976931348623157e308,
};

/**
 * 0, 1, …, n−1 for axis 1 of `like` ([batch, seq, …]). Its length is read from the graph's inputs where they have it
 * (shapeOf), so that every layer builds the same nodes and onnxruntime keeps one copy of the causal mask.
 */
function positions(g: Graph, like: Value): Value {
  const n = g.op1('Squeeze', [g.op1('Slice', [shapeOf(g, like), ints(g, [1]), ints(g, [2])]), ints(g, [0])]);
  return g.op1(
    'Range',
    [g.constant(0, 'int64', []), n, g.constant(1, 'int64', [])],
    {},
    { infos: [{ dtype: 'int64', shape: [like.shape[1]] }] },
  );
}

defineRule(
  'MultiHeadAttention',
  (c) => {
    const { g } = c;
    const [q, k, v] = [c.x(0), c.x(1), c.x(2)];
    const dy = c.dy[0]!;
    const N = c.attr('num_heads', 0);
    const D = q.shape[2],
      Dv = v.shape[2];
    if (typeof D !== 'number' || typeof Dv !== 'number' || D % N || Dv % N)
      throw new Error(`${c.node.name} (MultiHeadAttention): widths ${D}, ${Dv} must be static multiples of ${N} heads`);
    const dh = D / N,
      dv = Dv / N;
    const scale = c.attr('scale', 0) || 1 / Math.sqrt(dh);
    const causal = c.attr('unidirectional', 0) === 1;
    if (causal && !dimEq(q.shape[1], k.shape[1]))
      throw new Error(`${c.node.name} (MultiHeadAttention): a causal gradient needs keys as long as the queries`);
    const dt = q.dtype;
    // The row sum's products in float16 itself: onnxruntime's float16 ReduceSum accumulates in float32 (cuDNN's
    // float compute type, or its row-reduction kernel), so each of the dh products is rounded once, as the sum is
    // anyway when it is rounded to float16 for the product below — where float32 copies of dO and O would move 3.5×
    // the bytes. bfloat16 keeps 8 bits, too few for that: its products are float32.
    const rowType = dt === 'bfloat16' ? 'float32' : dt;

    const split = (t: Value, w: number): Value => g.op1('Reshape', [t, ints(g, [0, 0, N, w])]); // [B,S,N,w]
    const heads = (t: Value, w: number): Value => g.op1('Transpose', [split(t, w)], { perm: [0, 2, 1, 3] });
    const merge = (t: Value, w: number): Value =>
      g.op1('Reshape', [g.op1('Transpose', [t], { perm: [0, 2, 1, 3] }), ints(g, [0, 0, N * w])]);

    const Q = heads(q, dh),
      K = heads(k, dh),
      V = heads(v, dv),
      dO = heads(dy, dv);
    let s = product(g, Q, K, 0, 1, scale); // [B,N,S,L]
    if (causal) {
      // Key j is visible to query i when j ≤ i.
      const rows = g.op1('Unsqueeze', [positions(g, q), ints(g, [1])]);
      const visible = g.op1('Not', [g.op1('Greater', [positions(g, k), rows])]); // [S, L]
      // Added rather than selected: an Add read only by a last-axis Softmax, its inputs' shapes known to match, is what
      // onnxruntime fuses into one BiasSoftmax kernel on CUDA. Both shapes are stated in the model, as onnxruntime's
      // inference cannot derive a Range's length (the mask) or an Expand's (grouped-query keys, hence the scores).
      // A masked score may round to −∞ in float16; its probability is 0 either way (the diagonal is always visible).
      const bias = g.declare(g.op1('Where', [visible, scalar(g, 0, dt), scalar(g, LOWEST[dt], dt)]));
      s = add(g, g.declare(s), bias);
    }
    const p = g.op1('Softmax', [s], { axis: -1 });
    let dS: Value | undefined;
    if (c.needs[0] || c.needs[1]) {
      const rowSum = g.op1(
        'Transpose',
        [reduceKeep(g, mul(g, cast(g, split(dy, dv), rowType), cast(g, split(c.y(0), dv), rowType)), [-1])],
        { perm: [0, 2, 1, 3] },
      ); // [B,N,S,1]
      // dO·Vᵀ − rowsum as one product, accumulated in float32: dO gains the columns [−rowsum, 0 ×7] and V [1 ×8], so the
      // inner size stays a multiple of 8 (tensor cores) and no pass over the S² product is spent on the subtraction.
      const last = (k: number): Value => ints(g, [0, 0, 0, 0, 0, 0, 0, k]);
      const dOr = g.op1('Concat', [dO, g.op1('Pad', [neg(g, cast(g, rowSum, dt)), last(7)])], { axis: -1 });
      const Vr = g.op1('Pad', [V, last(8), scalar(g, 1, dt)]);
      dS = mul(g, p, product(g, dOr, Vr, 0, 1));
    }
    return [
      c.needs[0] ? merge(product(g, dS!, K, 0, 0, scale), dh) : undefined,
      c.needs[1] ? merge(product(g, dS!, Q, 1, 0, scale), dh) : undefined,
      c.needs[2] ? merge(product(g, p, dO, 1, 0), dv) : undefined,
    ];
  },
  'com.microsoft',
);
