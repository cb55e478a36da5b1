// LoRA as PEFT's LORA adapter (peft/tuners/lora): base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight
// [out, r], also for GPT-2's Conv1D (PEFT sizes the layers from in/out features; fan_in_fan_out only transposes the
// base weight). `use_rslora` came in PEFT 0.8: it is written only when the plugin uses rsLoRA, so that an older PEFT
// refuses the adapter instead of silently scaling by alpha/r. Imported: one r and one alpha, bias "none", no DoRA and
// no LoRA on embeddings, which Delta Studio's LoRA does not have.
import type { HostTensor } from '../../../onnx/graph.js';
import {
  fanInFanOut,
  f32,
  modulesWith,
  need,
  needTargets,
  PeftError,
  peftTargets,
  resolveModule,
  selectedModules,
  targetsFor,
  type PeftAdapter,
} from '../../peft.js';
import { checkLora } from './transform.js';

export const loraPeft: PeftAdapter = {
  kind: 'adapter',
  type: 'LORA',
  promptLearning: false,
  keys: { layers: ['lora_A', 'lora_B'], vectors: ['lora_embedding_A', 'lora_embedding_B', 'lora_magnitude_vector'] },

  export({ model, config, params, tensors, prefix }) {
    const out: Record<string, HostTensor> = {};
    for (const p of params) out[`${prefix}${p.name}.weight`] = f32(tensors[p.name]);
    const targeted = modulesWith(params, '.lora_A');
    const cfg: Record<string, unknown> = {
      r: config.r,
      lora_alpha: config.alpha,
      lora_dropout: config.dropout,
      bias: 'none',
      init_lora_weights: true,
      fan_in_fan_out: fanInFanOut(model, targeted),
      target_modules: peftTargets(model, targeted),
    };
    if (config.rslora) cfg.use_rslora = true;
    return { tensors: out, config: cfg };
  },

  import(site) {
    const { src, model } = site;
    const r = need<number>(src, 'r', (v) => Number.isInteger(v) && (v as number) > 0, 'a positive integer');
    const alpha = need<number>(src, 'lora_alpha', (v) => typeof v === 'number' && Number.isFinite(v), 'a number');
    const unusable = checkLora({ r, alpha, rslora: src.cfg.use_rslora === true });
    if (unusable) throw new PeftError(`${src.configFile}: r and lora_alpha: ${unusable}`, src.configFile);
    const targets = needTargets(src);
    if (src.cfg.use_dora === true)
      throw new PeftError(
        `${src.configFile}: use_dora is true: DoRA's magnitude vectors have no Delta Studio method`,
        src.configFile,
      );
    const bias = src.cfg.bias ?? 'none';
    if (bias !== 'none')
      throw new PeftError(
        `${src.configFile}: bias "${bias}" also trains biases; Delta Studio imports LoRA adapters with bias "none"`,
        src.configFile,
      );
    for (const [key, one] of [
      ['rank_pattern', r],
      ['alpha_pattern', alpha],
    ] as const) {
      const pat = src.cfg[key];
      if (pat && typeof pat === 'object' && Object.values(pat).some((v) => v !== one)) {
        throw new PeftError(
          `${src.configFile}: ${key} gives some modules another ${key === 'rank_pattern' ? 'rank' : 'alpha'}; a Delta Studio LoRA has one r and one alpha`,
          src.configFile,
        );
      }
    }
    const byModule = new Map<string, Record<string, HostTensor>>();
    for (const [k, t] of src.tensors) {
      if (/\.(lora_embedding_[AB])$/.test(k))
        throw new PeftError(
          `${src.weightsFile}: "${src.original.get(k)}" is LoRA on an embedding layer, which Delta Studio's LoRA does not modify`,
          src.weightsFile,
        );
      if (/\.lora_magnitude_vector$/.test(k))
        throw new PeftError(
          `${src.weightsFile}: "${src.original.get(k)}" is a DoRA magnitude vector, which Delta Studio's LoRA does not have`,
          src.weightsFile,
        );
      const m = /^(.*)\.(lora_[AB])\.weight$/.exec(k);
      if (!m) continue;
      const name = resolveModule(model, m[1], src, k);
      byModule.set(name, { ...byModule.get(name), [m[2]]: t });
    }
    const parts = ['lora_A', 'lora_B'].map((part) => ({ part, key: `.${part}.weight` }));
    const selected = selectedModules(site, targets, byModule, parts, 'LoRA');
    const tensors: Record<string, HostTensor> = {};
    for (const name of selected) {
      tensors[`${name}.lora_A`] = byModule.get(name)!.lora_A;
      tensors[`${name}.lora_B`] = byModule.get(name)!.lora_B;
    }
    const dropout = typeof src.cfg.lora_dropout === 'number' ? src.cfg.lora_dropout : 0;
    return {
      config: {
        method: 'lora',
        r,
        alpha,
        dropout,
        rslora: src.cfg.use_rslora === true,
        target_modules: targetsFor(model, targets, selected),
      },
      tensors,
    };
  },
};
