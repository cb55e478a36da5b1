// Bottleneck adapters, as OpenDelta inserts them on the attention and feed-forward parts of each block:
//  - adapter (Houlsby et al. 2019, sequential): out + up(act(down(out)))
//  - parallel_adapter (He et al. 2022): out + scale · up(act(down(in))), reading the part's input
//  - low_rank_adapter (Mahabadi et al. 2021): a sequential adapter whose projections are rank-k products
// Projections use the nn.Linear layout (weight [out, in]); weights start at normal(0, 0.01) and biases at zero
// (OpenDelta), low-rank factors glorot-uniform.
import type { Graph, Value } from '../../onnx/graph.js';
import type { ModuleRecord } from '../../models/builder.js';
import { selectModules, type Addressing } from '../addressing.js';
import { ADDRESSING_KEYS, registerMethod, type DeltaContext } from '../registry.js';

const ACTIVATIONS = ['gelu_new', 'gelu', 'relu', 'silu', 'tanh'];

function activate(g: Graph, x: Value, name: string): Value {
  switch (name) {
    case 'gelu_new':
      return g.op1('Gelu', [x], { approximate: 'tanh' });
    case 'gelu':
      return g.op1('Gelu', [x]);
    case 'relu':
      return g.op1('Relu', [x]);
    case 'silu':
      return g.op1('QuickGelu', [x], { alpha: 1.0 });
    case 'tanh':
      return g.op1('Tanh', [x]);
    default:
      throw new Error(`adapter: non_linearity "${name}" is not supported (${ACTIVATIONS.join(', ')})`);
  }
}

const parts = (ctx: DeltaContext, cfg: Record<string, unknown>, method: string): ModuleRecord[] =>
  selectModules(ctx.model, cfg as Addressing, method, ['Attention', 'FeedForward'], ['attn@', 'ff@']);

function dense(ctx: DeltaContext, prefix: string, x: Value, inF: number, outF: number): Value {
  const w = ctx.newParam(`${prefix}.weight`, {
    dtype: 'float32',
    shape: [outF, inF],
    data: Float32Array.from({ length: outF * inF }, () => 0.01 * ctx.rng.normal()),
  });
  const b = ctx.newParam(`${prefix}.bias`, { dtype: 'float32', shape: [outF], data: new Float32Array(outF) });
  return ctx.g.op1('Add', [ctx.g.op1('FusedMatMul', [x, w], { transB: 1 }), b]);
}

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

const bottleneckKeys = {
  bottleneck_dim: { type: 'integer' as const, default: 24, doc: 'width of the bottleneck' },
  non_linearity: { type: 'string' as const, default: 'gelu_new', doc: `activation: ${ACTIVATIONS.join(', ')}` },
};

function checkWidth(method: string, m: ModuleRecord, width: number): void {
  if (width < 1) throw new Error(`${method}: bottleneck width must be at least 1, got ${width}`);
  if (width > Math.max(m.in!, m.out!))
    throw new Error(`${method}: bottleneck ${width} is wider than ${m.name} (${m.in} → ${m.out})`);
}

registerMethod({
  name: 'adapter',
  kind: 'addition',
  title: 'Adapter (Houlsby, sequential)',
  keys: { ...bottleneckKeys, ...ADDRESSING_KEYS },
  apply(ctx, cfg) {
    const width = cfg.bottleneck_dim as number,
      act = cfg.non_linearity as string;
    for (const m of parts(ctx, cfg, 'adapter')) {
      checkWidth('adapter', m, width);
      ctx.mapOutput(m, (h) =>
        ctx.g.scope(`${m.name}.adapter`, () => {
          const down = dense(ctx, `${m.name}.adapter.down_proj`, h, m.out!, width);
          return ctx.g.op1('Add', [
            h,
            dense(ctx, `${m.name}.adapter.up_proj`, activate(ctx.g, down, act), width, m.out!),
          ]);
        }),
      );
      ctx.mark(m);
    }
  },
});

registerMethod({
  name: 'parallel_adapter',
  kind: 'addition',
  title: 'Parallel adapter',
  keys: {
    ...bottleneckKeys,
    scaled: { type: 'number', default: 1, doc: 'scale of the adapter branch' },
    ...ADDRESSING_KEYS,
  },
  apply(ctx, cfg) {
    const width = cfg.bottleneck_dim as number,
      act = cfg.non_linearity as string,
      scale = cfg.scaled as number;
    for (const m of parts(ctx, cfg, 'parallel_adapter')) {
      checkWidth('parallel_adapter', m, width);
      const x = ctx.g.value(m.input!);
      ctx.mapOutput(m, (y) =>
        ctx.g.scope(`${m.name}.parallel_adapter`, () => {
          const down = dense(ctx, `${m.name}.parallel_adapter.down_proj`, x, m.in!, width);
          let up = dense(ctx, `${m.name}.parallel_adapter.up_proj`, activate(ctx.g, down, act), width, m.out!);
          if (scale !== 1) up = ctx.g.op1('Mul', [up, ctx.g.constant(scale, 'float32', [])]);
          return ctx.g.op1('Add', [y, up]);
        }),
      );
      ctx.mark(m);
    }
  },
});

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
    phm_init_range: { type: 'number', default: 0.0001, doc: 'standard deviation of the PHM rules at start' },
    non_linearity: bottleneckKeys.non_linearity,
    ...ADDRESSING_KEYS,
  },
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
