// Low-rank adapter (Mahabadi et al. 2021): a sequential adapter whose projections are rank-k products of factors
// initialised glorot-uniform.
import type { Value } from '../../../onnx/graph.js';
import { ADDRESSING_KEYS, registerMethod, type DeltaContext } from '../../registry.js';
import { activate, bottleneckKeys, checkWidth, parts, unmergeable } from './common.js';

function lowRankDense(ctx: DeltaContext, prefix: string, x: Value, inF: number, outF: number, rank: number): Value {
  const glorot = (a: number, b: number) => Math.sqrt(6 / (a + b));
  const l = glorot(inF, rank),
    r = glorot(rank, outF);
  const left = ctx.newParam(`${prefix}.left`, {
    dtype: 'float32',
    shape: [inF, rank],
    data: Float32Array.from({ length: inF * rank }, () => ctx.rng.uniform(-l, l)),
  });
  const right = ctx.newParam(`${prefix}.right`, {
    dtype: 'float32',
    shape: [rank, outF],
    data: Float32Array.from({ length: rank * outF }, () => ctx.rng.uniform(-r, r)),
  });
  const b = ctx.newParam(`${prefix}.bias`, { dtype: 'float32', shape: [outF], data: new Float32Array(outF) });
  return ctx.g.op1('Add', [ctx.g.op1('MatMul', [ctx.g.op1('MatMul', [x, left]), right]), b]);
}

registerMethod({
  name: 'low_rank_adapter',
  kind: 'addition',
  title: 'Low-rank adapter',
  keys: {
    reduction_factor: { type: 'number', default: 32, doc: 'bottleneck = hidden / reduction_factor' },
    low_rank_rank: { type: 'integer', default: 1, doc: 'rank of each projection' },
    non_linearity: bottleneckKeys.non_linearity,
    ...ADDRESSING_KEYS,
  },
  cannotMerge: unmergeable('inserts low-rank adapter layers'),
  apply(ctx, cfg) {
    const act = cfg.non_linearity as string,
      rank = cfg.low_rank_rank as number;
    for (const m of parts(ctx, cfg, 'low_rank_adapter')) {
      const width = Math.floor(m.out! / (cfg.reduction_factor as number));
      checkWidth('low_rank_adapter', m, width);
      if (rank < 1 || rank > Math.min(width, m.out!))
        throw new Error(`low_rank_adapter: low_rank_rank ${rank} must be between 1 and ${Math.min(width, m.out!)}`);
      ctx.mapOutput(m, (h) =>
        ctx.g.scope(`${m.name}.low_rank_adapter`, () => {
          const down = lowRankDense(ctx, `${m.name}.low_rank_adapter.down_proj`, h, m.out!, width, rank);
          return ctx.g.op1('Add', [
            h,
            lowRankDense(ctx, `${m.name}.low_rank_adapter.up_proj`, activate(ctx.g, down, act), width, m.out!, rank),
          ]);
        }),
      );
      ctx.mark(m);
    }
  },
});
