// A Delta Studio plugin as a Hugging Face PEFT adapter folder, and PEFT adapter folders as plugins: the generic
// driver. What a method's adapter holds — its peft_type, tensor keys and adapter_config.json fields, both ways — is
// its own PEFT mapping (native/delta/methods/<method>/peft.ts); this module asks the registry for it, and does what
// every adapter shares: which method a plugin exports, the folder and its files, task types, modules_to_save.
//
// The folder is what PEFT's `save_pretrained` writes (peft/peft_model.py PeftModel.save_pretrained,
// peft/utils/save_and_load.py get_peft_model_state_dict, peft/config.py PeftConfigMixin.save_pretrained):
//  - adapter_model.safetensors: float32 tensors, metadata {"format": "pt"}, keys as the wrapper class a user loads
//    names them with the adapter name ("default") removed: base_model.model.<HF module>.… for tuners (LoRA, (IA)³),
//    the method's own keys (prompt_embeddings) for prompt learning, whose PeftModel.base_model is the transformers
//    model itself, so a head saved alongside is base_model.<module>;
//      task head     modules_to_save: base_model.model.<module>.<param> (ModulesToSaveWrapper.adapter_state_dict);
//                    PeftModelForSequenceClassification always adds "classifier" and "score" and saves their
//                    copies, trained or not, so a SEQ_CLS export always carries the head.
//  - adapter_config.json: keys sorted, 2-space indent. Only keys that PEFT 0.6.0's config classes accept, because
//    PEFT before 0.13 (forward compatibility, peft#2038) refuses unknown keys with "unexpected keyword argument":
//    base_model_name_or_path, revision, peft_type, task_type, inference_mode, and per type its mapping's fields.
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../files/atomic.js';
import { toFloat32 } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import {
  describeName,
  readJsonFile,
  readSafetensorsHeader,
  readTensorBytes,
  writeSafetensors,
} from '../onnx/safetensors.js';
import { loadWithDeltas, METHODS, parseDeltaConfig, type AppliedDelta, type DeltaConfig } from '../delta/index.js';
import {
  CLASSIFIER_MODULES,
  f32,
  keyFor,
  moduleOf,
  need,
  PeftError,
  type Json,
  type PeftAdapter,
  type PeftModulesToSave,
  type PeftSource,
} from '../delta/peft.js';
import { architectureOf, loadModel, type Task } from '../models/index.js';
import { readModelFolder } from '../models/folder.js';
import { classNameOf } from '../models/naming.js';
import { checkBase, modelFingerprint, type Plugin, type PluginMeta } from '../plugins/format.js';
import { makeParentFolders } from './merged.js';

export { PeftError } from '../delta/peft.js';

export const PEFT_CONFIG_NAME = 'adapter_config.json';
export const PEFT_WEIGHTS_NAME = 'adapter_model.safetensors';
const PEFT_PICKLE_NAME = 'adapter_model.bin';

const TASK_TYPE: Record<Task, string> = {
  classification: 'SEQ_CLS',
  regression: 'SEQ_CLS',
  'causal-lm': 'CAUSAL_LM',
  seq2seq: 'SEQ_2_SEQ_LM',
};
const CLASSIFIER_PARAM = /^(classifier|score)\./;

/** The PEFT adapter types of the registered methods, in registration order. */
const adapters = (): PeftAdapter[] =>
  [...METHODS.values()].flatMap((m) => (m.peft?.kind === 'adapter' ? [m.peft] : []));

/** The method whose trained weights PEFT keeps as modules_to_save beside an adapter (head-only). */
function modulesToSaveMethod(): { name: string; peft: PeftModulesToSave } {
  for (const m of METHODS.values()) if (m.peft?.kind === 'modules_to_save') return { name: m.name, peft: m.peft };
  throw new Error('no delta method keeps trained weights as modules_to_save');
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** The one PEFT adapter method of a plugin (a trained head goes into modules_to_save); refuses the rest. */
function exportableMethod(methods: DeltaConfig[], where: string): { config: DeltaConfig; peft: PeftAdapter } {
  const main = methods.filter((m) => METHODS.get(m.method)?.peft?.kind !== 'modules_to_save');
  const say = (m: DeltaConfig): string => `${m.method} (${METHODS.get(m.method)?.title ?? m.method})`;
  for (const m of main) {
    if (METHODS.get(m.method)?.peft?.kind !== 'adapter')
      throw new PeftError(`${where}: ${say(m)} has no PEFT equivalent; export 'merged' or 'onnx' instead`, where);
  }
  if (main.length === 0)
    throw new PeftError(
      `${where}: a ${methods.map((m) => m.method).join(' + ')} plugin has no PEFT adapter type (PEFT always adds an adapter method); export 'merged' or 'onnx' instead`,
      where,
    );
  if (main.length > 1)
    throw new PeftError(
      `${where}: combines ${main.map(say).join(' and ')}, but a PEFT adapter holds one method; export 'merged' or 'onnx' instead`,
      where,
    );
  return { config: main[0], peft: METHODS.get(main[0].method)!.peft as PeftAdapter };
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
  const refusal = main.peft.refuseExport?.(task, folder.config);
  if (refusal) throw new PeftError(`${where}: ${refusal}`, where);

  // Build the model with the plugin's methods: its parameters, by name and shape, are what the plugin must hold.
  const numLabels = task === 'classification' ? (headRows(plugin.tensors) ?? meta.labels?.length) : undefined;
  const { model, applied } = loadWithDeltas(modelDir, { task, numLabels }, meta.methods);
  checkPluginTensors(plugin, applied, modelDir);

  const pre = main.peft.promptLearning ? 'base_model.' : 'base_model.model.';
  const made = main.peft.export({
    model,
    config: main.config,
    params: applied.params.filter((p) => p.method === main.config.method),
    tensors: plugin.tensors,
    hf: folder.config,
    modelDir,
    where,
    prefix: pre,
  });
  const out: Record<string, HostTensor> = { ...made.tensors };
  const cfg: Json = {
    base_model_name_or_path: opts.baseModelNameOrPath ?? resolve(modelDir),
    inference_mode: true,
    peft_type: main.peft.type,
    revision: null,
    task_type: TASK_TYPE[task],
    ...made.config,
  };

  // Weights trained whole (a new head, head-only) are PEFT's modules_to_save.
  const extra = applied.params.filter((p) => p.method !== main.config.method);
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
  if (main.peft.promptLearning) {
    // PEFT 0.6's prompt-learning configs have no modules_to_save: only the classifier that SEQ_CLS adds by itself.
    if (others.length || (extra.length && !isCls)) {
      throw new PeftError(
        `${where}: ${main.config.method} with trained weights ${extra.map((p) => p.name).join(', ')}: a PEFT prompt-learning adapter can only carry a sequence classifier besides its prompt; export 'onnx' instead`,
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
  const undoParents = makeParentFolders(out);
  const tmp = mkdtempSync(join(dirname(out), `.${basename(out)}.peft-`));
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
    undoParents();
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
  SEQ_2_SEQ_LM: 'seq2seq',
};

/** How the registered adapters name their tensors (see PeftAdapter.keys). */
function adapterKeys(): { layers: Set<string>; vectors: Set<string>; own: Set<string> } {
  const all = adapters().map((a) => a.keys);
  return {
    layers: new Set(all.flatMap((k) => k.layers ?? [])),
    vectors: new Set(all.flatMap((k) => k.vectors ?? [])),
    own: new Set(all.flatMap((k) => k.own ?? [])),
  };
}

function readSource(peftDir: string): PeftSource {
  const dir = resolve(peftDir);
  const configFile = join(dir, PEFT_CONFIG_NAME);
  if (!existsSync(configFile))
    throw new PeftError(
      `${dir}: no ${PEFT_CONFIG_NAME}; a PEFT adapter folder has ${PEFT_CONFIG_NAME} and ${PEFT_WEIGHTS_NAME}`,
      configFile,
    );
  let cfg: unknown;
  try {
    cfg = readJsonFile(configFile);
  } catch (e) {
    throw new PeftError((e as Error).message, configFile, { cause: e });
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
  const keys = adapterKeys();
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
    } else if (!keys.own.has(k)) prefix = '';
    // A state dict saved with the wrapper still in it: <module>.modules_to_save.<adapter>.<param>.
    k = k.replace(/\.modules_to_save\.([^.]+)\./, (_, a: string) => {
      adapterNames.add(a);
      return '.';
    });
    const parts = k.split('.');
    const n = parts.length;
    // The adapter name follows the method's layer (<layer>.<adapter>.weight) or vector (<vector>.<adapter>).
    if (n >= 3 && keys.layers.has(parts[n - 3]) && parts[n - 1] === 'weight') {
      adapterNames.add(parts[n - 2]);
      parts.splice(n - 2, 1);
    } else if (n >= 2 && keys.vectors.has(parts[n - 2])) {
      adapterNames.add(parts[n - 1]);
      parts.pop();
    }
    k = parts.join('.');
    if (tensors.has(k))
      throw new PeftError(`${weightsFile}: "${key}" and "${original.get(k)}" are the same weight`, weightsFile);
    const data = toFloat32(ref.dtype, readTensorBytes(ref));
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0)
      throw new PeftError(
        `${weightsFile}: tensor "${key}" holds a NaN or infinite value (element ${bad}); adapter weights must be finite numbers`,
        weightsFile,
      );
    tensors.set(k, { dtype: 'float32', shape: [...ref.shape], data });
    original.set(k, key);
  }
  if (adapterNames.size > 1)
    throw new PeftError(
      `${weightsFile}: holds several adapters (${[...adapterNames].join(', ')}); save one adapter per folder`,
      weightsFile,
    );
  return { dir, configFile, weightsFile, cfg: cfg as Json, tensors, original, prefix };
}

/**
 * Keys of an adapter saved on the bare backbone (PeftModel over GPT2Model: base_model.model.h.0.…) under the names the
 * task class gives them, as the folder's weights are read (models/naming.ts).
 */
function inClassNames(src: PeftSource, modelType: unknown): void {
  for (const [k, t] of [...src.tensors]) {
    const cls = classNameOf(modelType, k);
    if (cls === k) continue;
    if (src.tensors.has(cls))
      throw new PeftError(
        `${src.weightsFile}: "${src.original.get(k)}" and "${src.original.get(cls)}" are the same weight`,
        src.weightsFile,
      );
    src.tensors.delete(k);
    src.tensors.set(cls, t);
    src.original.set(cls, src.original.get(k)!);
    src.original.delete(k);
  }
}

/** Whether a normalised key is an adapter method's own tensor rather than a whole weight (modules_to_save). */
function isMethodKey(k: string, keys: ReturnType<typeof adapterKeys>): boolean {
  if (keys.own.has(k)) return true;
  const parts = k.split('.');
  const n = parts.length;
  return (
    (n >= 2 && keys.vectors.has(parts[n - 1])) || (n >= 3 && keys.layers.has(parts[n - 2]) && parts[n - 1] === 'weight')
  );
}

/**
 * Reads a PEFT adapter folder (any registered adapter type: LoRA, (IA)³, prompt tuning, prefix tuning without
 * projection MLP) for the base model in modelDir: the plugin's metadata and tensors, ready for writePlugin.
 */
export function importPeft(
  peftDir: string,
  modelDir: string,
  opts: ImportPeftOptions = {},
): { meta: Omit<PluginMeta, 'tensorsSha256' | 'formatVersion'>; tensors: Record<string, HostTensor> } {
  const src = readSource(peftDir);
  const importable = adapters().map((a) => a.type);
  const peftType = need<string>(src, 'peft_type', (v) => typeof v === 'string', `one of ${importable.join(', ')}`);
  const adapter = adapters().find((a) => a.type === peftType);
  if (!adapter) {
    throw new PeftError(
      `${src.configFile}: peft_type ${describeName(peftType)} is not supported; Delta Studio imports ${importable.join(', ')} adapters`,
      src.configFile,
    );
  }
  const folder = readModelFolder(modelDir);
  inClassNames(src, folder.config.model_type);
  const taskType = src.cfg.task_type;
  let task: Task;
  if (taskType === undefined || taskType === null) task = opts.task ?? architectureOf(folder).defaultTask;
  else if (typeof taskType === 'string' && FROM_TASK_TYPE[taskType]) task = FROM_TASK_TYPE[taskType];
  else
    throw new PeftError(
      `${src.configFile}: task_type ${describeName(taskType)} is not supported; Delta Studio imports ${Object.keys(FROM_TASK_TYPE).join(', ')}`,
      src.configFile,
    );

  // Whole weights (modules_to_save) apart from the methods' own tensors.
  const keys = adapterKeys();
  const wholeKeys = [...src.tensors.keys()].filter((k) => !isMethodKey(k, keys));
  const whole = Object.create(null) as Record<string, HostTensor>;
  for (const k of wholeKeys) whole[k] = src.tensors.get(k)!;
  let numLabels: number | undefined;
  if (task === 'classification') {
    numLabels = headRows(whole);
    if (numLabels === 1 || folder.config.problem_type === 'regression') task = 'regression';
  }
  const model = loadModel(folder, { task, numLabels });

  const imported = adapter.import({ src, model, task, hf: folder.config, modelDir });
  const methods: DeltaConfig[] = [imported.config];
  const tensors: Record<string, HostTensor> = imported.tensors;
  const keeper = modulesToSaveMethod();

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
      // Trained whole weights become the modules_to_save method (head-only), which covers task heads only (an
      // embedding in modules_to_save is not).
      if (!keeper.peft.weights.test(k))
        throw new PeftError(
          `${src.weightsFile}: "${src.original.get(k)}" is a trained ${k} (modules_to_save); Delta Studio imports ${keeper.peft.which}`,
          src.weightsFile,
        );
      changed = true;
    }
  }
  for (const name of Object.keys(model.created)) {
    if (!whole[name]) {
      throw new PeftError(
        `${src.weightsFile}: "${keyFor(src, name, '')}" is missing: ${basename(folder.dir)} has no ${name} (its ${task} head), so the adapter must carry it in modules_to_save`,
        src.weightsFile,
      );
    }
  }
  if (changed) methods.push({ method: keeper.name });
  const parsed = parseDeltaConfig(methods, `${src.configFile} (as Delta Studio methods)`);

  // The plugin holds exactly its methods' parameters: build the model with them and take each by name and shape.
  const { applied } = loadWithDeltas(modelDir, { task, numLabels }, parsed);
  const out = Object.create(null) as Record<string, HostTensor>;
  for (const p of applied.params) {
    let t: HostTensor | undefined = tensors[p.name] ?? whole[p.name];
    if (!t && p.method === keeper.name) t = f32(applied.initial[p.value]);
    const want = applied.initial[p.value].shape;
    if (!t) throw new PeftError(`${src.weightsFile}: has nothing for ${p.name} (${p.method})`, src.weightsFile);
    if (!sameShape(t.shape, want))
      throw new PeftError(
        `${src.weightsFile}: "${src.original.get(p.name) ?? keyFor(src, p.name, '')}" has shape [${t.shape}], ${p.name} on ${basename(folder.dir)} is [${want}]`,
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
