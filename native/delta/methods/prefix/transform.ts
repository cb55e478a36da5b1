// Prefix tuning's graph transform, as PEFT with prefix_projection: P trainable key/value prefixes in front of every
// self-attention's keys and values — the model is built with them (build) — produced during training by an MLP
// (embedding → Linear → tanh → Linear) that stabilises optimisation, or (reparameterize false) the prefixes
// themselves. apply initialises them as PyTorch does. Positions after the prefix continue from P, as transformers
// does with past_key_values.
import type { BuildDeltas } from '../../../models/types.js';
import type { DeltaContext } from '../../registry.js';

export function buildPrefix(cfg: Record<string, unknown>): BuildDeltas {
  const n = cfg.prefix_token_num as number;
  if (n < 1) throw new Error(`prefix: prefix_token_num must be at least 1, got ${n}`);
  if (cfg.reparameterize && (cfg.mid_dim as number) < 1)
    throw new Error(`prefix: mid_dim must be at least 1, got ${cfg.mid_dim}`);
  return { prefix: { tokens: n, hidden: cfg.reparameterize ? (cfg.mid_dim as number) : 0 } };
}

export function applyPrefix(ctx: DeltaContext): void {
  const w = ctx.model.builder.deltaWeights;
  const init = (name: string, fill: (fanIn: number) => number): void => {
    const v = w.get(name);
    if (!v)
      throw new Error(
        `prefix: the model was built without "${name}"; build it with deltaBuildOptions(configs) (loadWithDeltas does)`,
      );
    const shape = v.shape as number[];
    const fanIn = name.endsWith('.bias')
      ? (w.get(name.replace('.bias', '.weight'))!.shape[1] as number)
      : shape[shape.length - 1];
    ctx.adoptParam(name, {
      dtype: 'float32',
      shape,
      data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => fill(fanIn)),
    });
  };
  if (w.has('prefix.key_values')) init('prefix.key_values', () => ctx.rng.normal());
  else {
    // As PyTorch initialises nn.Embedding (normal) and nn.Linear (uniform ±1/√fan_in) in PEFT's PrefixEncoder.
    init('prefix.embedding', () => ctx.rng.normal());
    for (const n of ['prefix.mlp.0.weight', 'prefix.mlp.0.bias', 'prefix.mlp.2.weight', 'prefix.mlp.2.bias']) {
      init(n, (fanIn) => ctx.rng.uniform(-1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn)));
    }
  }
  for (const m of ctx.model.modules) if (m.type === 'Attention' && !m.name.endsWith('EncDecAttention')) ctx.mark(m);
}

/**
 * The prefixes a trained reparameterised prefix delta stands for (the MLP is only a training aid), as the MLP gives
 * them: [P, layers·2·kvHeads·dh], in (layer, key|value, head, dim) order. `value(name)` gives a parameter's trained
 * float32 values.
 */
export function projectPrefix(value: (name: string) => { data: Float32Array; shape: number[] }): {
  data: Float32Array;
  shape: number[];
} {
  const E = value('prefix.embedding'),
    W0 = value('prefix.mlp.0.weight'),
    b0 = value('prefix.mlp.0.bias');
  const W2 = value('prefix.mlp.2.weight'),
    b2 = value('prefix.mlp.2.bias');
  const [P, D] = E.shape,
    [Hd] = W0.shape,
    [N] = W2.shape;
  const kv = new Float32Array(P * N);
  const h = new Float64Array(Hd);
  for (let p = 0; p < P; p++) {
    for (let j = 0; j < Hd; j++) {
      let s = b0.data[j];
      for (let d = 0; d < D; d++) s += E.data[p * D + d] * W0.data[j * D + d];
      h[j] = Math.tanh(s);
    }
    for (let n = 0; n < N; n++) {
      let s = b2.data[n];
      for (let j = 0; j < Hd; j++) s += h[j] * W2.data[n * Hd + j];
      kv[p * N + n] = s;
    }
  }
  return { data: kv, shape: [P, N] };
}
