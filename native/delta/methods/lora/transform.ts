// LoRA's graph transform, as PEFT: y = W·x + B·A·dropout(x)·scale, A [r, in] kaiming-uniform (a = √5), B [out, r]
// zero, scale = alpha / r (rsLoRA: alpha / √r). GPT-2's Conv1D is handled in the math sense (in = rows of its weight).
import { selectModules, type Addressing } from '../../addressing.js';
import type { DeltaContext } from '../../registry.js';

/** PEFT's per-architecture default target modules. */
export const LORA_DEFAULT_TARGETS: Record<string, string[]> = {
  bert: ['query', 'value'],
  roberta: ['query', 'value'],
  gpt2: ['c_attn'],
  llama: ['q_proj', 'v_proj'],
  mistral: ['q_proj', 'v_proj'],
  qwen2: ['q_proj', 'v_proj'],
  t5: ['q', 'v'],
};

export function loraScale(cfg: { r: number; alpha: number; rslora: boolean }): number {
  return cfg.rslora ? cfg.alpha / Math.sqrt(cfg.r) : cfg.alpha / cfg.r;
}

/**
 * Why r and alpha make no usable scale: the branch is multiplied by alpha/r in float32, so a scale float32 cannot
 * hold (lora_alpha 1e308) turns every output into NaN.
 */
export function checkLora(cfg: Record<string, unknown>): string | undefined {
  const r = cfg.r as number,
    alpha = cfg.alpha as number;
  if (r < 1) return `r must be at least 1, got ${r}`;
  const scale = loraScale({ r, alpha, rslora: cfg.rslora as boolean });
  if (!Number.isFinite(Math.fround(scale)))
    return `alpha ${alpha} / ${cfg.rslora ? '√' : ''}r (r ${r}) is a scale of ${scale}, beyond float32's range: every output would be NaN; use a smaller alpha`;
  return undefined;
}

export function applyLora(ctx: DeltaContext, cfg: Record<string, unknown>): void {
  const r = cfg.r as number,
    alpha = cfg.alpha as number,
    dropout = cfg.dropout as number;
  if (r < 1) throw new Error(`lora: r must be at least 1, got ${r}`);
  if (dropout < 0 || dropout >= 1) throw new Error(`lora: dropout must be in [0, 1), got ${dropout}`);
  const scale = loraScale({ r, alpha, rslora: cfg.rslora as boolean });
  const g = ctx.g;
  for (const m of selectModules(
    ctx.model,
    cfg as Addressing,
    'lora',
    ['Linear', 'Conv1D'],
    LORA_DEFAULT_TARGETS[ctx.model.modelType],
  )) {
    const inF = m.in!,
      outF = m.out!;
    if (r > Math.min(inF, outF))
      throw new Error(`lora: rank ${r} is larger than ${m.name} (${inF} → ${outF}); use r ≤ ${Math.min(inF, outF)}`);
    const bound = 1 / Math.sqrt(inF);
    const A = ctx.newParam(`${m.name}.lora_A`, {
      dtype: 'float32',
      shape: [r, inF],
      data: Float32Array.from({ length: r * inF }, () => ctx.rng.uniform(-bound, bound)),
    });
    const B = ctx.newParam(`${m.name}.lora_B`, {
      dtype: 'float32',
      shape: [outF, r],
      data: new Float32Array(outF * r),
    });
    const x = m.input!;
    ctx.mapOutput(m, (y) =>
      g.scope(`${m.name}.lora`, () => {
        const xin =
          dropout > 0
            ? g.op1('Dropout', [x, g.constant(dropout, 'float32', []), g.constant(1, 'bool', [])])
            : g.value(x);
        const h = g.op1('FusedMatMul', [g.op1('FusedMatMul', [xin, A], { transB: 1 }), B], {
          transB: 1,
          alpha: scale,
        });
        return g.op1('Add', [y, h]);
      }),
    );
    ctx.mark(m);
  }
}
