// Compacter (Mahabadi et al. 2021): a sequential adapter whose projections are parameterised hypercomplex
// multiplication layers.
import type { Value } from '../../../onnx/graph.js';
import { ADDRESSING_KEYS, registerMethod, type DeltaContext } from '../../registry.js';
import { activate, bottleneckKeys, checkWidth, parts, unmergeable } from './common.js';

/**
 * A parameterised hypercomplex multiplication layer (PHM, Zhang et al. 2021): W = Σᵢ kron(ruleᵢ, W_leftᵢ·W_rightᵢ),
 * [in, out], with n rules of n × n and rank-k factors; y = x·W + bias.
 */
function phmDense(
  ctx: DeltaContext,
  prefix: string,
  x: Value,
  inF: number,
  outF: number,
  n: number,
  rank: number,
  initRange: number,
): Value {
  const g = ctx.g;
  const p = inF / n,
    q = outF / n;
  const glorot = (a: number, b: number) => Math.sqrt(6 / (a + b));
  const rule = ctx.newParam(`${prefix}.phm_rule`, {
    dtype: 'float32',
    shape: [n, n, n],
    data: Float32Array.from({ length: n * n * n }, () => initRange * ctx.rng.normal()),
  });
  const lb = glorot(p, rank),
    rb = glorot(rank, q);
  const left = ctx.newParam(`${prefix}.W_left`, {
    dtype: 'float32',
    shape: [n, p, rank],
    data: Float32Array.from({ length: n * p * rank }, () => ctx.rng.uniform(-lb, lb)),
  });
  const right = ctx.newParam(`${prefix}.W_right`, {
    dtype: 'float32',
    shape: [n, rank, q],
    data: Float32Array.from({ length: n * rank * q }, () => ctx.rng.uniform(-rb, rb)),
  });
  const bias = ctx.newParam(`${prefix}.bias`, { dtype: 'float32', shape: [outF], data: new Float32Array(outF) });
  const Bi = g.op1('MatMul', [left, right]); // [n, p, q]
  // kron(A, B)[a·p + b, c·q + d] = A[a, c]·B[b, d]: broadcast [n, n, 1, n, 1] × [n, 1, p, 1, q], sum over the rule index.
  const A5 = g.op1('Unsqueeze', [rule, ctx.g.constant([2, 4], 'int64', [2])]);
  const B5 = g.op1('Unsqueeze', [Bi, ctx.g.constant([1, 3], 'int64', [2])]);
  const W = g.op1('Reshape', [
    g.op1('ReduceSum', [g.op1('Mul', [A5, B5]), ctx.g.constant([0], 'int64', [1])], { keepdims: 0 }),
    ctx.g.constant([inF, outF], 'int64', [2]),
  ]);
  return g.op1('Add', [g.op1('MatMul', [x, W]), bias]);
}

registerMethod({
  name: 'compacter',
  kind: 'addition',
  title: 'Compacter',
  keys: {
    reduction_factor: { type: 'number', default: 16, doc: 'bottleneck = hidden / reduction_factor' },
    hypercomplex_division: { type: 'integer', default: 4, doc: 'n: number of Kronecker terms (divides the widths)' },
    phm_rank: { type: 'integer', default: 1, doc: 'rank of each factorised PHM weight' },
    phm_init_range: {
      type: 'number',
      default: 0.0001,
      doc: 'standard deviation of the PHM rules at start',
      trainingOnly: true,
    },
    non_linearity: bottleneckKeys.non_linearity,
    ...ADDRESSING_KEYS,
  },
  cannotMerge: unmergeable('inserts hypercomplex adapter layers'),
  apply(ctx, cfg) {
    const act = cfg.non_linearity as string,
      n = cfg.hypercomplex_division as number,
      rank = cfg.phm_rank as number;
    for (const m of parts(ctx, cfg, 'compacter')) {
      const width = Math.floor(m.out! / (cfg.reduction_factor as number));
      checkWidth('compacter', m, width);
      if (n < 1 || m.out! % n !== 0 || width % n !== 0)
        throw new Error(
          `compacter: hypercomplex_division ${n} must divide ${m.name}'s width ${m.out} and the bottleneck ${width}`,
        );
      if (rank < 1) throw new Error(`compacter: phm_rank must be at least 1, got ${rank}`);
      ctx.mapOutput(m, (h) =>
        ctx.g.scope(`${m.name}.compacter`, () => {
          const down = phmDense(
            ctx,
            `${m.name}.compacter.down_proj`,
            h,
            m.out!,
            width,
            n,
            rank,
            cfg.phm_init_range as number,
          );
          return ctx.g.op1('Add', [
            h,
            phmDense(
              ctx,
              `${m.name}.compacter.up_proj`,
              activate(ctx.g, down, act),
              width,
              m.out!,
              n,
              rank,
              cfg.phm_init_range as number,
            ),
          ]);
        }),
      );
      ctx.mark(m);
    }
  },
});
