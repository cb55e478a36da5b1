// (IA)³'s graph transform, as PEFT: a learned vector l (initialised to ones) scales the output of the target modules
// (keys, values: y·l) or, for feed-forward modules, their input (W·(x·l)). Defaults are PEFT's per architecture.
import type { ModuleRecord } from '../../../models/builder.js';
import type { BuiltModel } from '../../../models/types.js';
import { selectModules, type Addressing } from '../../addressing.js';
import type { DeltaContext } from '../../registry.js';

export const IA3_DEFAULTS: Record<string, { targets: string[]; feedforward: string[] }> = {
  bert: { targets: ['key', 'value', 'output.dense'], feedforward: ['output.dense'] },
  roberta: { targets: ['key', 'value', 'output.dense'], feedforward: ['output.dense'] },
  gpt2: { targets: ['c_attn', 'mlp.c_proj'], feedforward: ['mlp.c_proj'] },
  llama: { targets: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  mistral: { targets: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  qwen2: { targets: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  t5: { targets: ['k', 'v', 'wo'], feedforward: ['wo'] },
};

/** The feed-forward modules of a config (their input is scaled): given, or PEFT's default when no targets are given. */
export function feedforwardModules(model: BuiltModel, cfg: Record<string, unknown>): ModuleRecord[] {
  const given = !!(cfg.modified_modules || cfg.target_modules);
  const spec = cfg.feedforward_modules ?? (given ? [] : (IA3_DEFAULTS[model.modelType]?.feedforward ?? []));
  if (!((Array.isArray(spec) && spec.length) || typeof spec === 'string')) return [];
  return selectModules(model, { target_modules: spec as string[] | string }, 'ia3.feedforward_modules', [
    'Linear',
    'Conv1D',
  ]);
}

export function applyIa3(ctx: DeltaContext, cfg: Record<string, unknown>): void {
  const g = ctx.g;
  const mods = selectModules(
    ctx.model,
    cfg as Addressing,
    'ia3',
    ['Linear', 'Conv1D'],
    IA3_DEFAULTS[ctx.model.modelType]?.targets,
  );
  const ff = new Set<string>();
  for (const m of feedforwardModules(ctx.model, cfg)) {
    if (!mods.includes(m)) throw new Error(`ia3: feedforward module ${m.name} is not among the target modules`);
    ff.add(m.name);
  }
  for (const m of mods) {
    const n = ff.has(m.name) ? m.in! : m.out!;
    const l = ctx.newParam(`${m.name}.ia3_l`, { dtype: 'float32', shape: [n], data: new Float32Array(n).fill(1) });
    if (ff.has(m.name)) ctx.mapInput(m, (x) => g.op1('Mul', [x, l]));
    else ctx.mapOutput(m, (y) => g.op1('Mul', [y, l]));
    ctx.mark(m);
  }
}
