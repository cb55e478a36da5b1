// (IA)³ (Liu et al. 2022), as PEFT: a learned vector l (initialised to ones) scales the output of the target modules
// (keys, values: y·l) or, for feed-forward modules, their input (W·(x·l)). Defaults are PEFT's per architecture.
import { selectModules, type Addressing } from '../addressing.js';
import { ADDRESSING_KEYS, registerMethod, type DeltaContext } from '../registry.js';

export const IA3_DEFAULTS: Record<string, { targets: string[]; feedforward: string[] }> = {
  bert: { targets: ['key', 'value', 'output.dense'], feedforward: ['output.dense'] },
  roberta: { targets: ['key', 'value', 'output.dense'], feedforward: ['output.dense'] },
  gpt2: { targets: ['c_attn', 'mlp.c_proj'], feedforward: ['mlp.c_proj'] },
  llama: { targets: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  mistral: { targets: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  qwen2: { targets: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  t5: { targets: ['k', 'v', 'wo'], feedforward: ['wo'] },
};

registerMethod({
  name: 'ia3',
  kind: 'reparameterization',
  title: '(IA)³',
  keys: {
    feedforward_modules: { type: 'strings-or-regex', doc: 'targets whose input (not output) is scaled' },
    ...ADDRESSING_KEYS,
  },
  apply(ctx: DeltaContext, cfg) {
    const g = ctx.g;
    const dflt = IA3_DEFAULTS[ctx.model.modelType];
    const mods = selectModules(ctx.model, cfg as Addressing, 'ia3', ['Linear', 'Conv1D'], dflt?.targets);
    const given = !!(cfg.modified_modules || cfg.target_modules);
    const ffSpec = cfg.feedforward_modules ?? (given ? [] : (dflt?.feedforward ?? []));
    const ff = new Set<string>();
    if ((Array.isArray(ffSpec) && ffSpec.length) || typeof ffSpec === 'string') {
      const sel = selectModules(ctx.model, { target_modules: ffSpec as string[] | string }, 'ia3.feedforward_modules', [
        'Linear',
        'Conv1D',
      ]);
      for (const m of sel) {
        if (!mods.includes(m)) throw new Error(`ia3: feedforward module ${m.name} is not among the target modules`);
        ff.add(m.name);
      }
    }
    for (const m of mods) {
      const n = ff.has(m.name) ? m.in! : m.out!;
      const l = ctx.newParam(`${m.name}.ia3_l`, { dtype: 'float32', shape: [n], data: new Float32Array(n).fill(1) });
      if (ff.has(m.name)) ctx.mapInput(m, (x) => g.op1('Mul', [x, l]));
      else ctx.mapOutput(m, (y) => g.op1('Mul', [y, l]));
      ctx.mark(m);
    }
  },
});
