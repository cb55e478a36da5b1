// The PEFT side of delta methods: what a method's PEFT mapping is (methods/<method>/peft.ts: plugin tensors and
// config ↔ PEFT keys and adapter_config.json fields), and the PEFT naming rules the mappings share — target_modules
// and our module names both ways, config.json sizes for prompt learning, an adapter folder as read. The driver that
// writes and reads adapter folders (native/export/peft.ts) asks each method's mapping, never its name.
import { toFloat32 } from '../onnx/dtype.js';
import { describeValue } from '../onnx/safetensors.js';
import type { HostTensor } from '../onnx/graph.js';
import type { HfConfig } from '../models/folder.js';
import type { BuiltModel } from '../models/types.js';
import { selectModules } from './addressing.js';
import type { DeltaParam, PeftImportSite, PeftSource } from './types.js';

export type {
  Json,
  PeftAdapter,
  PeftExportSite,
  PeftImportSite,
  PeftMapping,
  PeftModulesToSave,
  PeftSource,
} from './types.js';

export class PeftError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'PeftError';
  }
}

/** What PeftModelForSequenceClassification puts in modules_to_save by itself. */
export const CLASSIFIER_MODULES = ['classifier', 'score'];

/** A float32 copy. */
export function f32(t: HostTensor): HostTensor {
  if (t.dtype === 'float32')
    return { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.data as Float32Array) };
  const d = t.data;
  return {
    dtype: 'float32',
    shape: [...t.shape],
    data: toFloat32(t.dtype, new Uint8Array(d.buffer, d.byteOffset, d.byteLength)),
  };
}

/** The module a parameter belongs to. */
export const moduleOf = (param: string): string => param.slice(0, param.lastIndexOf('.'));

/** The modules whose parameter names end with `suffix` (".lora_A"), in parameter order. */
export const modulesWith = (params: DeltaParam[], suffix: string): string[] =>
  params.filter((p) => p.name.endsWith(suffix)).map((p) => p.name.slice(0, -suffix.length));

/** PEFT's fan_in_fan_out: whether any of the modules is a Conv1D (weight stored [in, out]). */
export const fanInFanOut = (model: BuiltModel, modules: string[]): boolean =>
  modules.some((n) => model.modules.find((m) => m.name === n)?.type === 'Conv1D');

/** Sizes PEFT's _prepare_prompt_learning_config reads from config.json, with the key/value heads of GQA models. */
export function promptDims(
  cfg: HfConfig,
  where: string,
): { layers: number; tokenDim: number; heads: number; kvHeads: number } {
  const pick = (keys: string[], what: string): number => {
    for (const k of keys) if (typeof cfg[k] === 'number') return cfg[k] as number;
    throw new PeftError(`${where}: config.json has none of ${keys.join(', ')} (${what})`);
  };
  const layers = pick(['num_hidden_layers', 'num_layers', 'n_layer'], 'the number of layers');
  const tokenDim = pick(['hidden_size', 'n_embd', 'd_model'], 'the hidden size');
  const heads = pick(
    ['num_attention_heads', 'n_head', 'num_heads', 'encoder_attention_heads'],
    'the number of attention heads',
  );
  const kvHeads = typeof cfg.num_key_value_heads === 'number' ? cfg.num_key_value_heads : heads;
  return { layers, tokenDim, heads, kvHeads };
}

/**
 * PEFT target_modules for exactly `targeted`: for each module the shortest dotted suffix that no other module's
 * name ends with (matched without a dot boundary, as PEFT's feed-forward check and its oldest versions do, which
 * is stricter than the dot-boundary match of current versions). Whole names when that is not enough.
 */
export function peftTargets(model: BuiltModel, targeted: string[]): string[] {
  const set = new Set(targeted);
  const all = model.modules.map((m) => m.name);
  const out = new Set<string>();
  for (const name of targeted) {
    const parts = name.split('.');
    let pick = name;
    for (let i = parts.length - 1; i > 0; i--) {
      if (/^\d+$/.test(parts[i])) continue;
      const suffix = parts.slice(i).join('.');
      if (all.every((n) => !n.endsWith(suffix) || set.has(n))) {
        pick = suffix;
        break;
      }
    }
    out.add(pick);
  }
  const list = [...out].sort();
  // Our own addressing (PEFT's list semantics) must select the same modules, or whole names are written.
  const back = selectModules(model, { target_modules: list }, 'export', ['Linear', 'Conv1D']).map((m) => m.name);
  return back.length === set.size && back.every((n) => set.has(n)) ? list : [...targeted];
}

/** A key of adapter_config.json that must be there and pass `check`. */
export function need<T>(src: PeftSource, key: string, check: (v: unknown) => boolean, want: string): T {
  const v = src.cfg[key];
  if (v === undefined || v === null)
    throw new PeftError(
      `${src.configFile}: "${key}" is missing; a ${String(src.cfg.peft_type ?? 'PEFT')} adapter_config.json needs it (${want})`,
      src.configFile,
    );
  if (!check(v))
    throw new PeftError(`${src.configFile}: "${key}" must be ${want}, got ${describeValue(v)}`, src.configFile);
  return v as T;
}

/** target_modules of adapter_config.json: a list of names or one regular expression. */
export const needTargets = (src: PeftSource): string[] | string =>
  need<string[] | string>(
    src,
    'target_modules',
    (v) => typeof v === 'string' || (Array.isArray(v) && v.every((s) => typeof s === 'string')),
    'a list of module names or a regular expression',
  );

/** How the file would spell a key of module `name`, for errors about keys it lacks. */
export const keyFor = (src: PeftSource, name: string, suffix: string): string => `${src.prefix}${name}${suffix}`;

/** Our module for a PEFT module path: the same name, or the one module whose name ends with it (an adapter saved on BertModel, LlamaModel, …). */
export function resolveModule(model: BuiltModel, path: string, src: PeftSource, key: string): string {
  if (model.modules.some((m) => m.name === path)) return path;
  const hits = model.modules.filter((m) => m.name.endsWith(`.${path}`));
  if (hits.length === 1) return hits[0].name;
  throw new PeftError(
    `${src.weightsFile}: "${src.original.get(key) ?? key}" names module "${path}", which this ${model.architecture} does not have${hits.length ? ` once (candidates: ${hits.map((m) => m.name).join(', ')})` : ''}`,
    src.weightsFile,
  );
}

/** The modules PEFT's target_modules (with layers_to_transform and exclude_modules) selects on our model. */
export function peftSelection(model: BuiltModel, src: PeftSource, targets: string[] | string): string[] {
  let mods: string[];
  if (targets === 'all-linear') {
    mods = model.modules
      .filter(
        (m) =>
          (m.type === 'Linear' || m.type === 'Conv1D') &&
          m.name !== 'lm_head' &&
          !CLASSIFIER_MODULES.some((c) => m.name === c || m.name.startsWith(`${c}.`)),
      )
      .map((m) => m.name);
  } else {
    try {
      mods = selectModules(model, { target_modules: targets }, 'target_modules', ['Linear', 'Conv1D']).map(
        (m) => m.name,
      );
    } catch (e) {
      throw new PeftError(`${src.configFile}: ${(e as Error).message}`, src.configFile, { cause: e });
    }
  }
  const layers = src.cfg.layers_to_transform;
  if (layers !== undefined && layers !== null) {
    const keep = new Set<number>(Array.isArray(layers) ? (layers as number[]) : [layers as number]);
    const pattern =
      typeof src.cfg.layers_pattern === 'string'
        ? [src.cfg.layers_pattern]
        : Array.isArray(src.cfg.layers_pattern)
          ? (src.cfg.layers_pattern as string[])
          : ['layers', 'layer', 'h', 'block', 'blocks'];
    mods = mods.filter((n) => {
      const parts = n.split('.');
      const at = parts.findIndex((p, i) => pattern.includes(p) && i + 1 < parts.length && /^\d+$/.test(parts[i + 1]));
      return at >= 0 && keep.has(Number(parts[at + 1]));
    });
  }
  const ex = src.cfg.exclude_modules;
  if (typeof ex === 'string') mods = mods.filter((n) => !new RegExp(`^(?:${ex})$`).test(n));
  else if (Array.isArray(ex)) mods = mods.filter((n) => !(ex as string[]).some((x) => n === x || n.endsWith(`.${x}`)));
  return mods;
}

/** Target addressing for the imported config: PEFT's own value when it selects exactly these modules on its own, else whole names. */
export function targetsFor(model: BuiltModel, given: unknown, mods: string[]): string[] | string {
  if (
    (typeof given === 'string' && given !== 'all-linear') ||
    (Array.isArray(given) && given.every((s) => typeof s === 'string'))
  ) {
    try {
      const sel = selectModules(model, { target_modules: given as string[] | string }, 'import', [
        'Linear',
        'Conv1D',
      ]).map((m) => m.name);
      if (sel.length === mods.length && sel.every((n, i) => n === mods[i])) return given as string[] | string;
    } catch {
      /* not selectable as written: whole names below */
    }
  }
  return peftTargets(model, mods);
}

/**
 * The modules target_modules selects, checked against a per-module adapter's tensors (`found`: our module name → its
 * tensors by part, e.g. lora_A): a selected module that lacks a part, or tensors for a module it does not select,
 * are errors naming the key. `parts` spells each part's key after the module name; `what` names the method's weights.
 */
export function selectedModules(
  site: PeftImportSite,
  targets: string[] | string,
  found: Map<string, Record<string, HostTensor>>,
  parts: { part: string; key: string }[],
  what: string,
): string[] {
  const { src, model } = site;
  const selected = peftSelection(model, src, targets);
  for (const name of selected)
    for (const { part, key } of parts)
      if (!found.get(name)?.[part])
        throw new PeftError(
          `${src.weightsFile}: "${keyFor(src, name, key)}" is missing: target_modules ${JSON.stringify(targets)} selects ${name}, and the file has no ${part} for it`,
          src.weightsFile,
        );
  const stray = [...found.keys()].find((n) => !selected.includes(n));
  if (stray)
    throw new PeftError(
      `${src.weightsFile}: has ${what} weights for ${stray}, which target_modules ${JSON.stringify(targets)} does not select`,
      src.weightsFile,
    );
  return selected;
}

/** A prompt-learning adapter's prompt_embeddings and num_virtual_tokens. */
export function promptEmbeddings(src: PeftSource, type: string): { emb: HostTensor; tokens: number } {
  const emb = src.tensors.get('prompt_embeddings');
  if (!emb)
    throw new PeftError(
      `${src.weightsFile}: "prompt_embeddings" is missing (a ${type} adapter holds its prompt there)`,
      src.weightsFile,
    );
  const tokens = need<number>(
    src,
    'num_virtual_tokens',
    (v) => Number.isInteger(v) && (v as number) > 0,
    'a positive integer',
  );
  return { emb, tokens };
}
