// What the bottleneck adapters share, as OpenDelta inserts them on the attention and feed-forward parts of each
// block: the parts they go on, their activations, Linear projections (nn.Linear layout, weight [out, in], normal(0,
// 0.01) weights and zero biases as OpenDelta), bottleneck checks, and why none of them merges into base weights.
import type { Graph, Value } from '../../../onnx/graph.js';
import type { ModuleRecord } from '../../../models/builder.js';
import { selectModules, type Addressing } from '../../addressing.js';
import type { ConfigKey, DeltaContext } from '../../registry.js';

export const ACTIVATIONS = ['gelu_new', 'gelu', 'relu', 'silu', 'tanh'];

export function activate(g: Graph, x: Value, name: string): Value {
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

export const parts = (ctx: DeltaContext, cfg: Record<string, unknown>, method: string): ModuleRecord[] =>
  selectModules(ctx.model, cfg as Addressing, method, ['Attention', 'FeedForward'], ['attn@', 'ff@']);

export function dense(ctx: DeltaContext, prefix: string, x: Value, inF: number, outF: number): Value {
  const w = ctx.newParam(`${prefix}.weight`, {
    dtype: 'float32',
    shape: [outF, inF],
    data: Float32Array.from({ length: outF * inF }, () => 0.01 * ctx.rng.normal()),
  });
  const b = ctx.newParam(`${prefix}.bias`, { dtype: 'float32', shape: [outF], data: new Float32Array(outF) });
  return ctx.g.op1('Add', [ctx.g.op1('FusedMatMul', [x, w], { transB: 1 }), b]);
}

export const bottleneckKeys: Record<'bottleneck_dim' | 'non_linearity', ConfigKey> = {
  bottleneck_dim: { type: 'integer' as const, default: 24, doc: 'width of the bottleneck' },
  non_linearity: { type: 'string' as const, default: 'gelu_new', doc: `activation: ${ACTIVATIONS.join(', ')}` },
};

export function checkWidth(method: string, m: ModuleRecord, width: number): void {
  if (width < 1) throw new Error(`${method}: bottleneck width must be at least 1, got ${width}`);
  if (width > Math.max(m.in!, m.out!))
    throw new Error(`${method}: bottleneck ${width} is wider than ${m.name} (${m.in} → ${m.out})`);
}

/** Why an adapter cannot become plain weights: it is computation the Hugging Face architecture has no weights for. */
export const unmergeable = (what: string): string => `it ${what}, which the Hugging Face architecture does not have`;
