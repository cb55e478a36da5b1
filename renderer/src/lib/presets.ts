// Method presets offered by the New run, Models and Compare screens: delta configs as native/delta reads them.
import type { DeltaConfigInput } from './types.js';

export type DeltaConfig = DeltaConfigInput;

export interface Preset {
  id: string;
  label: string;
  deltas: DeltaConfig[];
}

export const PRESETS: Preset[] = [
  { id: 'lora-r8', label: 'LoRA r=8 (q, v)', deltas: [{ method: 'lora', r: 8, alpha: 8 }] },
  { id: 'lora-r16', label: 'LoRA r=16 (q, v)', deltas: [{ method: 'lora', r: 16, alpha: 16 }] },
  { id: 'ia3', label: '(IA)³', deltas: [{ method: 'ia3' }] },
  { id: 'bitfit', label: 'BitFit', deltas: [{ method: 'bitfit' }] },
  { id: 'adapter', label: 'Adapter (Houlsby, 24)', deltas: [{ method: 'adapter', bottleneck_dim: 24 }] },
  { id: 'prefix', label: 'Prefix tuning (6 tokens)', deltas: [{ method: 'prefix', prefix_token_num: 6 }] },
  { id: 'soft-prompt', label: 'Soft prompt (20 tokens)', deltas: [{ method: 'soft_prompt', soft_token_num: 20 }] },
  { id: 'lora-bitfit', label: 'LoRA r=8 + BitFit', deltas: [{ method: 'lora', r: 8, alpha: 8 }, { method: 'bitfit' }] },
  { id: 'head-only', label: 'Head only (baseline)', deltas: [{ method: 'head-only' }] },
  { id: 'full', label: 'Full fine-tuning (baseline)', deltas: [{ method: 'full' }] },
];

export const presetById = (id: string): Preset | undefined => PRESETS.find((p) => p.id === id);

/** "q_proj, v_proj" → ["q_proj", "v_proj"]; empty → undefined (the method's default targets). */
export function parseModules(text: string): string[] | undefined {
  const list = text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter(Boolean);
  return list.length ? list : undefined;
}
