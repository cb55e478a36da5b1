// A Delta Studio plugin as a Hugging Face PEFT adapter folder, and PEFT adapter folders as plugins.
//
// The folder is what PEFT's `save_pretrained` writes (peft/peft_model.py PeftModel.save_pretrained,
// peft/utils/save_and_load.py get_peft_model_state_dict, peft/config.py PeftConfigMixin.save_pretrained):
//  - adapter_model.safetensors: float32 tensors, metadata {"format": "pt"}, keys as the wrapper class a user loads
//    names them with the adapter name ("default") removed:
//      LoRA / (IA)³  base_model.model.<HF module>.lora_A.weight [r, in], .lora_B.weight [out, r] (also for GPT-2's
//                    Conv1D: PEFT sizes the layers from in/out features; fan_in_fan_out only transposes the base
//                    weight), base_model.model.<HF module>.ia3_l [out, 1], or [1, in] for a feed-forward module
//                    (peft/tuners/ia3/layer.py IA3Layer.update_layer)
//      prompt tuning, prefix tuning  prompt_embeddings (the only tensor; PeftModel.base_model is the transformers
//                    model itself, so a head saved alongside is base_model.<module>)
//      task head     modules_to_save: base_model.model.<module>.<param> (ModulesToSaveWrapper.adapter_state_dict);
//                    PeftModelForSequenceClassification always adds "classifier" and "score" and saves their
//                    copies, trained or not, so a SEQ_CLS export always carries the head.
//  - adapter_config.json: keys sorted, 2-space indent. Only keys that PEFT 0.6.0's config classes accept, because
//    PEFT before 0.13 (forward compatibility, peft#2038) refuses unknown keys with "unexpected keyword argument":
//    base_model_name_or_path, revision, peft_type, task_type, inference_mode, and per type the fields below.
//    `use_rslora` came in PEFT 0.8: it is written only when the plugin uses rsLoRA, so that an older PEFT refuses the
//    adapter instead of silently scaling by alpha/r.
//
// Prefix tuning: a plugin trained through the reparameterisation MLP is exported as its projected prefixes with
// `prefix_projection: false` — PEFT's PrefixEncoder then holds them as nn.Embedding(P, layers·2·token_dim), which
// loads both for inference and with is_trainable=True (with prefix_projection true, a trainable load builds the
// small [P, token_dim] embedding and the saved projected table no longer fits). For grouped-query attention
// token_dim and num_attention_heads are written per key/value head, which is what PEFT's
// _prepare_prompt_learning_config (peft#1901) turns them into anyway, and what older PEFT then uses as written.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../files/atomic.js';
import { toFloat32 } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../onnx/safetensors.js';
import { loadWithDeltas, METHODS, parseDeltaConfig, type AppliedDelta, type DeltaConfig } from '../delta/index.js';
import { selectModules } from '../delta/addressing.js';
import { IA3_DEFAULTS } from '../delta/methods/ia3.js';
import { projectPrefix } from '../delta/methods/prefix.js';
import { architectureOf, loadModel, type BuiltModel, type Task } from '../models/index.js';
import { readModelFolder, type HfConfig } from '../models/folder.js';
import { checkBase, modelFingerprint, type Plugin, type PluginMeta } from '../plugins/format.js';

export const PEFT_CONFIG_NAME = 'adapter_config.json';
export const PEFT_WEIGHTS_NAME = 'adapter_model.safetensors';
const PEFT_PICKLE_NAME = 'adapter_model.bin';

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

const PEFT_TYPE: Record<string, string> = {
  lora: 'LORA',
  ia3: 'IA3',
  soft_prompt: 'PROMPT_TUNING',
  prefix: 'PREFIX_TUNING',
};
const TASK_TYPE: Record<Task, string> = {
  classification: 'SEQ_CLS',
  regression: 'SEQ_CLS',
  'causal-lm': 'CAUSAL_LM',
  'seq2seq-lm': 'SEQ_2_SEQ_LM',
};
/** What PeftModelForSequenceClassification puts in modules_to_save by itself. */
const CLASSIFIER_MODULES = ['classifier', 'score'];
const CLASSIFIER_PARAM = /^(classifier|score)\./;
/** The weights the head-only method trains (native/delta/methods/baselines.ts). */
const TASK_HEAD = /^(classifier|score|lm_head)(\.|$)|^(bert|roberta)\.pooler\./;

type Json = Record<string, unknown>;

function f32(t: HostTensor): HostTensor {
  if (t.dtype === 'float32')
    return { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.data as Float32Array) };
  const d = t.data;
  return {
    dtype: 'float32',
    shape: [...t.shape],
    data: toFloat32(t.dtype, new Uint8Array(d.buffer, d.byteOffset, d.byteLength)),
  };
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);
const moduleOf = (param: string): string => param.slice(0, param.lastIndexOf('.'));

/** Sizes PEFT's _prepare_prompt_learning_config reads from config.json, with the key/value heads of GQA models. */
function promptDims(
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
function peftTargets(model: BuiltModel, targeted: string[]): string[] {
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

/** The one PEFT-expressible method of a plugin (head-only goes into modules_to_save); refuses the rest. */
function exportableMethod(methods: DeltaConfig[], where: string): DeltaConfig {
  const main = methods.filter((m) => m.method !== 'head-only');
  const say = (m: DeltaConfig): string => `${m.method} (${METHODS.get(m.method)?.title ?? m.method})`;
  for (const m of main) {
    if (!PEFT_TYPE[m.method])
      throw new PeftError(`${where}: ${say(m)} has no PEFT equivalent; export 'merged' or 'onnx' instead`, where);
  }
  if (main.length === 0)
    throw new PeftError(
      `${where}: a head-only plugin has no PEFT adapter type (PEFT always adds an adapter method); export 'merged' or 'onnx' instead`,
      where,
    );
  if (main.length > 1)
    throw new PeftError(
      `${where}: combines ${main.map(say).join(' and ')}, but a PEFT adapter holds one method; export 'merged' or 'onnx' instead`,
      where,
    );
  return main[0];
}

/** (IA)³ feed-forward modules: the same rule as native/delta/methods/ia3.ts. */
function ia3FeedForward(model: BuiltModel, cfg: DeltaConfig): Set<string> {
  const given = !!(cfg.modified_modules || cfg.target_modules);
  const spec = (cfg.feedforward_modules ?? (given ? [] : (IA3_DEFAULTS[model.modelType]?.feedforward ?? []))) as
    string[] | string;
  if ((Array.isArray(spec) && spec.length === 0) || spec === '') return new Set();
  return new Set(
    selectModules(model, { target_modules: spec }, 'ia3.feedforward_modules', ['Linear', 'Conv1D']).map((m) => m.name),
  );
}

/** The prefixes of a prefix plugin as PEFT's embedding table [P, layers·2·kvHeads·dh], in (layer, key|value, head, dim) order. */
function prefixTable(tensors: Record<string, HostTensor>): HostTensor {
  const kv = tensors['prefix.key_values'];
  if (kv) {
    const [L, two, H, P, dh] = kv.shape;
    const src = f32(kv).data as Float32Array;
    const N = L * two * H * dh;
    const out = new Float32Array(P * N);
    for (let l = 0; l < L; l++)
      for (let s = 0; s < two; s++)
        for (let h = 0; h < H; h++)
          for (let p = 0; p < P; p++)
            for (let d = 0; d < dh; d++) {
              out[p * N + ((l * two + s) * H + h) * dh + d] = src[(((l * two + s) * H + h) * P + p) * dh + d];
            }
    return { dtype: 'float32', shape: [P, N], data: out };
  }
  const t = projectPrefix((name) => {
    const x = tensors[name];
    return { data: f32(x).data as Float32Array, shape: x.shape };
  });
  return { dtype: 'float32', shape: t.shape, data: t.data };
}

/** The head rows (labels) a set of tensors implies, from the classifier's output weight. */
function headRows(names: Record<string, HostTensor>): number | undefined {
  for (const n of ['classifier.out_proj.weight', 'classifier.weight', 'score.weight'])
    if (names[n]) return names[n].shape[0];
  return undefined;
}

export interface ExportPeftOptions {
  /** Replace a non-empty outDir (default: refuse). */
  overwrite?: boolean;
  /** Export even if modelDir is not the base model the plugin was trained on. */
  force?: boolean;
  /** base_model_name_or_path to write (default: modelDir, absolute, as PEFT records a local folder). */
  baseModelNameOrPath?: string;
}

/** Writes `plugin` as a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) at outDir. */
export function exportPeft(
  plugin: Plugin,
  modelDir: string,
  outDir: string,
  opts: ExportPeftOptions = {},
): { files: string[] } {
  const where = plugin.file;
  const meta = plugin.meta;
  const main = exportableMethod(meta.methods, where);
  const folder = readModelFolder(modelDir);
  checkBase(meta, folder, opts.force, where);
  const task = meta.task;
  const isPrompt = main.method === 'soft_prompt' || main.method === 'prefix';
  if (main.method === 'prefix' && task === 'seq2seq-lm') {
    throw new PeftError(
      `${where}: prefix on ${folder.config.model_type} (seq2seq-lm): Delta Studio puts the prefix on the encoder's and the decoder's self-attention, PEFT's seq-to-seq prefix tuning on the decoder's self- and cross-attention only, so the adapter would compute something else; export 'onnx' instead`,
      where,
    );
  }

  // Build the model with the plugin's methods: its parameters, by name and shape, are what the plugin must hold.
  const numLabels = task === 'classification' ? (headRows(plugin.tensors) ?? meta.labels?.length) : undefined;
  const { model, applied } = loadWithDeltas(modelDir, { task, numLabels }, meta.methods);
  checkPluginTensors(plugin, applied, modelDir);

  const pre = isPrompt ? 'base_model.' : 'base_model.model.';
  const out: Record<string, HostTensor> = {};
  const mainParams = applied.params.filter((p) => p.method === main.method);
  const cfg: Json = {
    base_model_name_or_path: opts.baseModelNameOrPath ?? resolve(modelDir),
    inference_mode: true,
    peft_type: PEFT_TYPE[main.method],
    revision: null,
    task_type: TASK_TYPE[task],
  };
  const targetedModules = (suffix: string): string[] =>
    mainParams.filter((p) => p.name.endsWith(suffix)).map((p) => p.name.slice(0, -suffix.length));
  const typeOf = (name: string): string | undefined => model.modules.find((m) => m.name === name)?.type;

  if (main.method === 'lora') {
    for (const p of mainParams) out[`${pre}${p.name}.weight`] = f32(plugin.tensors[p.name]);
    const targeted = targetedModules('.lora_A');
    Object.assign(cfg, {
      r: main.r,
      lora_alpha: main.alpha,
      lora_dropout: main.dropout,
      bias: 'none',
      init_lora_weights: true,
      fan_in_fan_out: targeted.some((n) => typeOf(n) === 'Conv1D'),
      target_modules: peftTargets(model, targeted),
    });
    if (main.rslora) cfg.use_rslora = true;
  } else if (main.method === 'ia3') {
    const targeted = targetedModules('.ia3_l');
    const ff = ia3FeedForward(model, main);
    for (const p of mainParams) {
      const t = f32(plugin.tensors[p.name]);
      // PEFT keeps the vector as a column [out, 1] that scales outputs, or a row [1, in] that scales inputs.
      out[`${pre}${p.name}`] = { ...t, shape: ff.has(moduleOf(p.name)) ? [1, t.shape[0]] : [t.shape[0], 1] };
    }
    const targets = peftTargets(model, targeted);
    // PEFT checks feedforward_modules ⊆ target_modules and matches them by plain endswith: reuse target names
    // that select only feed-forward modules, or fall back to whole names for both.
    let feedforward = targets.filter((t) => targeted.filter((n) => n.endsWith(t)).every((n) => ff.has(n)));
    const mixed = targets.some((t) => {
      const hit = targeted.filter((n) => n.endsWith(t));
      return hit.some((n) => ff.has(n)) && hit.some((n) => !ff.has(n));
    });
    let targetList = targets;
    if (mixed) {
      targetList = targeted;
      feedforward = targeted.filter((n) => ff.has(n));
    }
    Object.assign(cfg, {
      target_modules: targetList,
      feedforward_modules: feedforward,
      init_ia3_weights: true,
      fan_in_fan_out: targeted.some((n) => typeOf(n) === 'Conv1D'),
    });
  } else {
    const dims = promptDims(folder.config, modelDir);
    if (main.method === 'soft_prompt') {
      const t = f32(plugin.tensors['soft_prompt.embedding']);
      out.prompt_embeddings = t;
      Object.assign(cfg, {
        num_virtual_tokens: t.shape[0],
        token_dim: t.shape[1],
        // 1 also for seq2seq: Delta Studio's prompt goes in front of the encoder only (PEFT's 2 adds decoder prompts).
        num_transformer_submodules: 1,
        num_attention_heads: dims.heads,
        num_layers: dims.layers,
        prompt_tuning_init: 'RANDOM',
        prompt_tuning_init_text: null,
        tokenizer_name_or_path: null,
      });
    } else {
      const t = prefixTable(plugin.tensors);
      const tokenDim = (dims.tokenDim / dims.heads) * dims.kvHeads;
      if (t.shape[1] !== dims.layers * 2 * tokenDim) {
        throw new PeftError(
          `${where}: the prefixes have ${t.shape[1]} values per token, ${modelDir}'s config implies ${dims.layers} layers × 2 × ${tokenDim} = ${dims.layers * 2 * tokenDim}`,
          where,
        );
      }
      out.prompt_embeddings = t;
      Object.assign(cfg, {
        num_virtual_tokens: t.shape[0],
        token_dim: tokenDim,
        encoder_hidden_size: tokenDim,
        num_transformer_submodules: 1,
        num_attention_heads: dims.kvHeads,
        num_layers: dims.layers,
        prefix_projection: false,
      });
    }
  }

  // Weights trained whole (a new head, head-only) are PEFT's modules_to_save.
  const extra = applied.params.filter((p) => p.method !== main.method);
  for (const p of extra) out[`${pre}${p.name}`] = f32(plugin.tensors[p.name]);
  const isCls = TASK_TYPE[task] === 'SEQ_CLS';
  if (isCls && !extra.some((p) => CLASSIFIER_PARAM.test(p.name))) {
    // PEFT saves the classifier's copy even untrained: the folder's head.
    for (const [name, ref] of folder.weights) {
      if (CLASSIFIER_PARAM.test(name))
        out[`${pre}${name}`] = {
          dtype: 'float32',
          shape: [...ref.shape],
          data: toFloat32(ref.dtype, readTensorBytes(ref)),
        };
    }
  }
  const others = [
    ...new Set(
      extra
        .map((p) => moduleOf(p.name))
        .filter((m) => !CLASSIFIER_MODULES.some((c) => m === c || m.startsWith(`${c}.`))),
    ),
  ];
  if (isPrompt) {
    // PEFT 0.6's prompt-learning configs have no modules_to_save: only the classifier that SEQ_CLS adds by itself.
    if (others.length || (extra.length && !isCls)) {
      throw new PeftError(
        `${where}: ${main.method} with trained weights ${extra.map((p) => p.name).join(', ')}: a PEFT prompt-learning adapter can only carry a sequence classifier besides its prompt; export 'onnx' instead`,
        where,
      );
    }
  } else {
    cfg.modules_to_save = isCls ? [...CLASSIFIER_MODULES, ...others] : others.length ? others : null;
  }

  const files = writeAdapterFolder(outDir, out, cfg, !!opts.overwrite);
  return { files };
}

function checkPluginTensors(plugin: Plugin, applied: AppliedDelta, modelDir: string): void {
  const names = new Set(applied.params.map((p) => p.name));
  for (const p of applied.params) {
    const t = plugin.tensors[p.name];
    const want = applied.initial[p.value].shape;
    if (!t)
      throw new PeftError(
        `${plugin.file}: has no tensor "${p.name}", which its methods need on ${modelDir}`,
        plugin.file,
      );
    if (!sameShape(t.shape, want))
      throw new PeftError(
        `${plugin.file}: tensor "${p.name}" has shape [${t.shape}], its methods on ${modelDir} make [${want}]`,
        plugin.file,
      );
  }
  const stray = Object.keys(plugin.tensors).find((n) => !names.has(n));
  if (stray)
    throw new PeftError(
      `${plugin.file}: tensor "${stray}" belongs to none of its methods (${plugin.meta.methods.map((m) => m.method).join(', ')})`,
      plugin.file,
    );
}

/** PEFT's json.dumps(indent=2, sort_keys=True). */
function sortedJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedJson);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortedJson((v as Json)[k])]),
    );
  return v;
}

/** Writes the folder in a temp folder beside outDir, then renames it into place: a failure leaves nothing half-written. */
function writeAdapterFolder(
  outDir: string,
  tensors: Record<string, HostTensor>,
  cfg: Json,
  overwrite: boolean,
): string[] {
  const out = resolve(outDir);
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new PeftError(`${out} exists and is not a folder`, out);
    if (readdirSync(out).length > 0 && !overwrite)
      throw new PeftError(
        `${out} already exists and is not empty; choose a new folder, or overwrite it (overwrite: true)`,
        out,
      );
  }
  const parent = dirname(out);
  mkdirSync(parent, { recursive: true });
  const tmp = mkdtempSync(join(parent, `.${basename(out)}.peft-`));
  try {
    writeSafetensors(join(tmp, PEFT_WEIGHTS_NAME), tensors, { format: 'pt' });
    writeFileAtomic(join(tmp, PEFT_CONFIG_NAME), Buffer.from(`${JSON.stringify(sortedJson(cfg), null, 2)}\n`, 'utf8'));
    if (existsSync(out)) {
      const old = `${tmp}.old`;
      renameSync(out, old);
      try {
        renameSync(tmp, out);
      } catch (e) {
        renameSync(old, out);
        throw e;
      }
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, out);
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return [join(out, PEFT_CONFIG_NAME), join(out, PEFT_WEIGHTS_NAME)];
}

// ---------------------------------------------------------------------------------------------------------------
// Import

export interface ImportPeftOptions {
  /** Class names, in label-id order (default: the model's config.json id2label, when it has as many). */
  labels?: string[];
  /** The task when adapter_config.json has no task_type (default: the model family's natural task). */
  task?: Task;
}

const FROM_TASK_TYPE: Record<string, Task> = {
  SEQ_CLS: 'classification',
  CAUSAL_LM: 'causal-lm',
  SEQ_2_SEQ_LM: 'seq2seq-lm',
};
const IMPORTABLE = ['LORA', 'IA3', 'PROMPT_TUNING', 'PREFIX_TUNING'];

interface Source {
  dir: string;
  configFile: string;
  weightsFile: string;
  cfg: Json;
  /** Tensors by normalised key: without base_model(.model). and without the adapter name. */
  tensors: Map<string, HostTensor>;
  /** Normalised key → the key in the file, for errors. */
  original: Map<string, string>;
  /** How the file spells a module's keys (its prefix), for errors about keys it lacks. */
  prefix: string;
}

function readSource(peftDir: string): Source {
  const dir = resolve(peftDir);
  const configFile = join(dir, PEFT_CONFIG_NAME);
  if (!existsSync(configFile))
    throw new PeftError(
      `${dir}: no ${PEFT_CONFIG_NAME}; a PEFT adapter folder has ${PEFT_CONFIG_NAME} and ${PEFT_WEIGHTS_NAME}`,
      configFile,
    );
  let cfg: unknown;
  try {
    cfg = JSON.parse(readFileSync(configFile, 'utf8'));
  } catch (e) {
    throw new PeftError(`${configFile}: not valid JSON (${(e as Error).message})`, configFile, { cause: e });
  }
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg))
    throw new PeftError(`${configFile}: expected a JSON object`, configFile);
  const weightsFile = join(dir, PEFT_WEIGHTS_NAME);
  if (!existsSync(weightsFile)) {
    if (existsSync(join(dir, PEFT_PICKLE_NAME))) {
      throw new PeftError(
        `${join(dir, PEFT_PICKLE_NAME)}: only the pickle format (torch.save) is here, and unpickling can run arbitrary code, so Delta Studio does not read it; save the adapter as ${PEFT_WEIGHTS_NAME} (PEFT: model.save_pretrained(dir, safe_serialization=True))`,
        join(dir, PEFT_PICKLE_NAME),
      );
    }
    throw new PeftError(
      `${dir}: no ${PEFT_WEIGHTS_NAME}; a PEFT adapter folder has ${PEFT_CONFIG_NAME} and ${PEFT_WEIGHTS_NAME}`,
      weightsFile,
    );
  }
  const h = readSafetensorsHeader(weightsFile);
  const tensors = new Map<string, HostTensor>();
  const original = new Map<string, string>();
  const adapterNames = new Set<string>();
  let prefix = 'base_model.model.';
  for (const [key, ref] of h.tensors) {
    if (!['float32', 'float16', 'bfloat16'].includes(ref.dtype))
      throw new PeftError(
        `${weightsFile}: tensor "${key}" is ${ref.dtype}; adapter weights are float32, float16 or bfloat16`,
        weightsFile,
      );
    let k = key;
    if (k.startsWith('base_model.model.')) k = k.slice('base_model.model.'.length);
    else if (k.startsWith('base_model.')) {
      k = k.slice('base_model.'.length);
      prefix = 'base_model.';
    } else if (k !== 'prompt_embeddings') prefix = '';
    // A state dict saved with the wrapper still in it: <module>.modules_to_save.<adapter>.<param>.
    k = k.replace(/\.modules_to_save\.([^.]+)\./, (_, a: string) => {
      adapterNames.add(a);
      return '.';
    });
    const parts = k.split('.');
    const n = parts.length;
    if (n >= 3 && /^lora_(A|B)$/.test(parts[n - 3]) && parts[n - 1] === 'weight') {
      adapterNames.add(parts[n - 2]);
      parts.splice(n - 2, 1);
    } else if (n >= 2 && /^(ia3_l|lora_embedding_[AB]|lora_magnitude_vector)$/.test(parts[n - 2])) {
      adapterNames.add(parts[n - 1]);
      parts.pop();
    }
    k = parts.join('.');
    if (tensors.has(k))
      throw new PeftError(`${weightsFile}: "${key}" and "${original.get(k)}" are the same weight`, weightsFile);
    tensors.set(k, { dtype: 'float32', shape: [...ref.shape], data: toFloat32(ref.dtype, readTensorBytes(ref)) });
    original.set(k, key);
  }
  if (adapterNames.size > 1)
    throw new PeftError(
      `${weightsFile}: holds several adapters (${[...adapterNames].join(', ')}); save one adapter per folder`,
      weightsFile,
    );
  return { dir, configFile, weightsFile, cfg: cfg as Json, tensors, original, prefix };
}

function need<T>(src: Source, key: string, check: (v: unknown) => boolean, want: string): T {
  const v = src.cfg[key];
  if (v === undefined || v === null)
    throw new PeftError(
      `${src.configFile}: "${key}" is missing; a ${String(src.cfg.peft_type ?? 'PEFT')} adapter_config.json needs it (${want})`,
      src.configFile,
    );
  if (!check(v))
    throw new PeftError(`${src.configFile}: "${key}" must be ${want}, got ${JSON.stringify(v)}`, src.configFile);
  return v as T;
}

/** Our module for a PEFT module path: the same name, or the one module whose name ends with it (an adapter saved on BertModel, LlamaModel, …). */
function resolveModule(model: BuiltModel, path: string, src: Source, key: string): string {
  if (model.modules.some((m) => m.name === path)) return path;
  const hits = model.modules.filter((m) => m.name.endsWith(`.${path}`));
  if (hits.length === 1) return hits[0].name;
  throw new PeftError(
    `${src.weightsFile}: "${src.original.get(key) ?? key}" names module "${path}", which this ${model.architecture} does not have${hits.length ? ` once (candidates: ${hits.map((m) => m.name).join(', ')})` : ''}`,
    src.weightsFile,
  );
}

/** The modules PEFT's target_modules (with layers_to_transform and exclude_modules) selects on our model. */
function peftSelection(model: BuiltModel, src: Source, targets: string[] | string): string[] {
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
function targetsFor(model: BuiltModel, given: unknown, mods: string[]): string[] | string {
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
 * Reads a PEFT adapter folder (LoRA; also (IA)³, prompt tuning and prefix tuning without projection MLP) for the
 * base model in modelDir: the plugin's metadata and tensors, ready for writePlugin.
 */
export function importPeft(
  peftDir: string,
  modelDir: string,
  opts: ImportPeftOptions = {},
): { meta: Omit<PluginMeta, 'tensorsSha256' | 'formatVersion'>; tensors: Record<string, HostTensor> } {
  const src = readSource(peftDir);
  const peftType = need<string>(src, 'peft_type', (v) => typeof v === 'string', `one of ${IMPORTABLE.join(', ')}`);
  if (!IMPORTABLE.includes(peftType)) {
    throw new PeftError(
      `${src.configFile}: peft_type "${peftType}" is not supported; Delta Studio imports ${IMPORTABLE.join(', ')} adapters`,
      src.configFile,
    );
  }
  const folder = readModelFolder(modelDir);
  const taskType = src.cfg.task_type;
  let task: Task;
  if (taskType === undefined || taskType === null) task = opts.task ?? architectureOf(folder).defaultTask;
  else if (typeof taskType === 'string' && FROM_TASK_TYPE[taskType]) task = FROM_TASK_TYPE[taskType];
  else
    throw new PeftError(
      `${src.configFile}: task_type ${JSON.stringify(taskType)} is not supported; Delta Studio imports ${Object.keys(FROM_TASK_TYPE).join(', ')}`,
      src.configFile,
    );

  // Whole weights (modules_to_save) apart from the method's own tensors.
  const methodKey = /\.(lora_[AB]\.weight|lora_embedding_[AB]|lora_magnitude_vector|ia3_l)$|^prompt_embeddings$/;
  const wholeKeys = [...src.tensors.keys()].filter((k) => !methodKey.test(k));
  const whole: Record<string, HostTensor> = {};
  for (const k of wholeKeys) whole[k] = src.tensors.get(k)!;
  let numLabels: number | undefined;
  if (task === 'classification') {
    numLabels = headRows(whole);
    if (numLabels === 1 || folder.config.problem_type === 'regression') task = 'regression';
  }
  const model = loadModel(folder, { task, numLabels });

  const methods: DeltaConfig[] = [];
  const tensors: Record<string, HostTensor> = {};
  const keyFor = (name: string, suffix: string): string => `${src.prefix}${name}${suffix}`;

  if (peftType === 'LORA') {
    const r = need<number>(src, 'r', (v) => Number.isInteger(v) && (v as number) > 0, 'a positive integer');
    const alpha = need<number>(src, 'lora_alpha', (v) => typeof v === 'number', 'a number');
    const targets = need<string[] | string>(
      src,
      'target_modules',
      (v) => typeof v === 'string' || (Array.isArray(v) && v.every((s) => typeof s === 'string')),
      'a list of module names or a regular expression',
    );
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
    const byModule = new Map<string, { A?: HostTensor; B?: HostTensor }>();
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
      const m = /^(.*)\.lora_(A|B)\.weight$/.exec(k);
      if (!m) continue;
      const name = resolveModule(model, m[1], src, k);
      const e = byModule.get(name) ?? {};
      e[m[2] as 'A' | 'B'] = t;
      byModule.set(name, e);
    }
    const selected = peftSelection(model, src, targets);
    for (const name of selected) {
      const e = byModule.get(name);
      for (const ab of ['A', 'B'] as const) {
        if (!e?.[ab])
          throw new PeftError(
            `${src.weightsFile}: "${keyFor(name, `.lora_${ab}.weight`)}" is missing: target_modules ${JSON.stringify(targets)} selects ${name}, and the file has no lora_${ab} for it`,
            src.weightsFile,
          );
      }
      tensors[`${name}.lora_A`] = e!.A!;
      tensors[`${name}.lora_B`] = e!.B!;
    }
    const stray = [...byModule.keys()].find((n) => !selected.includes(n));
    if (stray)
      throw new PeftError(
        `${src.weightsFile}: has LoRA weights for ${stray}, which target_modules ${JSON.stringify(targets)} does not select`,
        src.weightsFile,
      );
    const dropout = typeof src.cfg.lora_dropout === 'number' ? src.cfg.lora_dropout : 0;
    methods.push({
      method: 'lora',
      r,
      alpha,
      dropout,
      rslora: src.cfg.use_rslora === true,
      target_modules: targetsFor(model, targets, selected),
    });
  } else if (peftType === 'IA3') {
    const targets = need<string[] | string>(
      src,
      'target_modules',
      (v) => typeof v === 'string' || (Array.isArray(v) && v.every((s) => typeof s === 'string')),
      'a list of module names or a regular expression',
    );
    const found = new Map<string, HostTensor>();
    for (const [k, t] of src.tensors) {
      const m = /^(.*)\.ia3_l$/.exec(k);
      if (m) found.set(resolveModule(model, m[1], src, k), t);
    }
    const selected = peftSelection(model, src, targets);
    const ff: string[] = [];
    for (const name of selected) {
      const t = found.get(name);
      if (!t)
        throw new PeftError(
          `${src.weightsFile}: "${keyFor(name, '.ia3_l')}" is missing: target_modules ${JSON.stringify(targets)} selects ${name}, and the file has no ia3_l for it`,
          src.weightsFile,
        );
      // [1, in] scales the input of a feed-forward module, [out, 1] the output.
      if (t.shape.length === 2 && t.shape[0] === 1 && t.shape[1] !== 1) ff.push(name);
      tensors[`${name}.ia3_l`] = { dtype: 'float32', shape: [t.data.length], data: t.data };
    }
    const stray = [...found.keys()].find((n) => !selected.includes(n));
    if (stray)
      throw new PeftError(
        `${src.weightsFile}: has (IA)³ weights for ${stray}, which target_modules ${JSON.stringify(targets)} does not select`,
        src.weightsFile,
      );
    methods.push({
      method: 'ia3',
      target_modules: targetsFor(model, targets, selected),
      feedforward_modules: ff.length ? peftTargets(model, ff) : [],
    });
  } else {
    const emb = src.tensors.get('prompt_embeddings');
    if (!emb)
      throw new PeftError(
        `${src.weightsFile}: "prompt_embeddings" is missing (a ${peftType} adapter holds its prompt there)`,
        src.weightsFile,
      );
    const P = need<number>(
      src,
      'num_virtual_tokens',
      (v) => Number.isInteger(v) && (v as number) > 0,
      'a positive integer',
    );
    if (peftType === 'PROMPT_TUNING') {
      const submodules =
        typeof src.cfg.num_transformer_submodules === 'number'
          ? src.cfg.num_transformer_submodules
          : task === 'seq2seq-lm'
            ? 2
            : 1;
      if (submodules !== 1 || emb.shape[0] !== P) {
        throw new PeftError(
          `${src.weightsFile}: prompt_embeddings has ${emb.shape[0]} rows for ${P} virtual tokens (num_transformer_submodules ${submodules}); Delta Studio's soft prompt goes in front of the (encoder) input only, so it imports prompts with num_transformer_submodules 1`,
          src.weightsFile,
        );
      }
      methods.push({ method: 'soft_prompt', soft_token_num: P });
      tensors['soft_prompt.embedding'] = emb;
    } else {
      if (task === 'seq2seq-lm')
        throw new PeftError(
          `${src.configFile}: prefix tuning of a seq2seq model puts PEFT's prefix on the decoder's self- and cross-attention; Delta Studio's prefix is on the encoder's and decoder's self-attention`,
          src.configFile,
        );
      const dims = promptDims(folder.config, modelDir);
      const dh = dims.tokenDim / dims.heads,
        kv = dims.kvHeads,
        L = dims.layers;
      const N = L * 2 * kv * dh;
      if (emb.shape.length !== 2 || emb.shape[0] !== P || emb.shape[1] !== N) {
        throw new PeftError(
          `${src.weightsFile}: prompt_embeddings has shape [${emb.shape}], expected [${P}, ${N}] (${L} layers × key and value × ${kv} key/value heads × ${dh}): a prefix with projection saved before training ends is not importable`,
          src.weightsFile,
        );
      }
      const data = new Float32Array(P * N);
      const srcData = emb.data as Float32Array;
      for (let l = 0; l < L; l++)
        for (let s = 0; s < 2; s++)
          for (let h = 0; h < kv; h++)
            for (let p = 0; p < P; p++)
              for (let d = 0; d < dh; d++) {
                data[(((l * 2 + s) * kv + h) * P + p) * dh + d] = srcData[p * N + ((l * 2 + s) * kv + h) * dh + d];
              }
      methods.push({ method: 'prefix', prefix_token_num: P, reparameterize: false });
      tensors['prefix.key_values'] = { dtype: 'float32', shape: [L, 2, kv, P, dh], data };
    }
  }

  // modules_to_save: a head the folder lacks is the plugin's; a head the folder has stays the folder's when equal,
  // else the plugin trains it (head-only), with the folder's values for head weights the adapter did not save.
  const weightNames = new Set([...folder.weights.keys(), ...Object.keys(model.created)]);
  let changed = false;
  for (const k of wholeKeys) {
    if (!weightNames.has(k))
      throw new PeftError(
        `${src.weightsFile}: "${src.original.get(k)}" is neither ${peftType} weight nor a weight of ${basename(folder.dir)} (modules_to_save)`,
        src.weightsFile,
      );
    if (model.created[k]) continue;
    const ref = folder.weights.get(k)!;
    const t = whole[k];
    if (!sameShape(t.shape, ref.shape))
      throw new PeftError(
        `${src.weightsFile}: "${src.original.get(k)}" has shape [${t.shape}], ${basename(folder.dir)}'s ${k} is [${ref.shape}]`,
        src.weightsFile,
      );
    const base = toFloat32(ref.dtype, readTensorBytes(ref));
    if (base.some((x, i) => x !== t.data[i])) {
      // Trained whole weights become head-only, which covers task heads only (an embedding in modules_to_save is not).
      if (!TASK_HEAD.test(k))
        throw new PeftError(
          `${src.weightsFile}: "${src.original.get(k)}" is a trained ${k} (modules_to_save); Delta Studio imports trained task heads only (classifier, score, lm_head, pooler)`,
          src.weightsFile,
        );
      changed = true;
    }
  }
  for (const name of Object.keys(model.created)) {
    if (!whole[name]) {
      throw new PeftError(
        `${src.weightsFile}: "${keyFor(name, '')}" is missing: ${basename(folder.dir)} has no ${name} (its ${task} head), so the adapter must carry it in modules_to_save`,
        src.weightsFile,
      );
    }
  }
  if (changed) methods.push({ method: 'head-only' });
  const parsed = parseDeltaConfig(methods, `${src.configFile} (as Delta Studio methods)`);

  // The plugin holds exactly its methods' parameters: build the model with them and take each by name and shape.
  const { applied } = loadWithDeltas(modelDir, { task, numLabels }, parsed);
  const out: Record<string, HostTensor> = {};
  for (const p of applied.params) {
    let t: HostTensor | undefined = tensors[p.name] ?? whole[p.name];
    if (!t && p.method === 'head-only') t = f32(applied.initial[p.value]);
    const want = applied.initial[p.value].shape;
    if (!t) throw new PeftError(`${src.weightsFile}: has nothing for ${p.name} (${p.method})`, src.weightsFile);
    if (!sameShape(t.shape, want))
      throw new PeftError(
        `${src.weightsFile}: "${src.original.get(p.name) ?? keyFor(p.name, '')}" has shape [${t.shape}], ${p.name} on ${basename(folder.dir)} is [${want}]`,
        src.weightsFile,
      );
    out[p.name] = t;
  }

  let labels: string[] | undefined;
  if (task === 'classification') {
    const n = model.numLabels ?? numLabels;
    if (opts.labels) {
      if (opts.labels.length !== n)
        throw new PeftError(`${src.dir}: ${opts.labels.length} labels given, the head has ${n} classes`, src.dir);
      labels = [...opts.labels];
    } else {
      const id2label = folder.config.id2label;
      if (id2label && typeof id2label === 'object' && Object.keys(id2label).length === n) {
        labels = Object.entries(id2label as Record<string, unknown>)
          .sort(([a], [b]) => Number(a) - Number(b))
          .map(([, v]) => String(v));
      }
    }
  }
  const meta: Omit<PluginMeta, 'tensorsSha256' | 'formatVersion'> = {
    methods: parsed,
    task,
    base: {
      fingerprint: modelFingerprint(folder),
      modelType: String(folder.config.model_type),
      name: basename(resolve(modelDir)),
    },
    metrics: {},
    createdAt: new Date().toISOString(),
  };
  if (labels) meta.labels = labels;
  return { meta, tensors: out };
}
