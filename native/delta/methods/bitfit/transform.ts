// BitFit's graph transform, as OpenDelta: the biases of the selected Linear modules train (a bias is added, uniform
// ±1/√in, where a Linear has none, as in Llama and T5); a selected normalisation module gets a new bias vector
// (zeros) added to its output. Default: the Linear modules of attention and feed-forward, and the block norms.
import { selectModules, type Addressing } from '../../addressing.js';
import type { DeltaContext } from '../../registry.js';

export function applyBitfit(ctx: DeltaContext, cfg: Record<string, unknown>): void {
  const g = ctx.g;
  const mods = selectModules(
    ctx.model,
    cfg as Addressing,
    'bitfit',
    ['Linear', 'Conv1D', 'LayerNorm', 'RMSNorm'],
    ['attn@', 'ff@', 'layer_norm@'],
  );
  for (const m of mods) {
    if (m.type === 'Linear' || m.type === 'Conv1D') {
      const bias = m.params.find((p) => p.name === `${m.name}.bias`);
      if (bias) ctx.trainWeight(bias.name);
      else {
        const bound = 1 / Math.sqrt(m.in!);
        const b = ctx.newParam(`${m.name}.bias`, {
          dtype: 'float32',
          shape: [m.out!],
          data: Float32Array.from({ length: m.out! }, () => ctx.rng.uniform(-bound, bound)),
        });
        ctx.mapOutput(m, (y) => g.op1('Add', [y, b]));
      }
    } else {
      const b = ctx.newParam(`${m.name}.bitfit_bias`, {
        dtype: 'float32',
        shape: [m.out!],
        data: new Float32Array(m.out!),
      });
      ctx.mapOutput(m, (y) => g.op1('Add', [y, b]));
    }
    ctx.mark(m);
  }
}
