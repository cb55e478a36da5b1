// Exporting a plugin as a merged Hugging Face model folder: the base weights with the plugin's deltas folded in and
// its trained weights (task head, BitFit biases, head-only, full fine-tuning) in place, as the task class's
// save_pretrained would write it — model.safetensors or model-0000i-of-0000N.safetensors + index, config.json for
// the task, the tokenizer and generation files — so transformers (or Delta Studio) loads it with no delta code.
// What each method turns into is its own merge rule (native/delta/methods/<method>/merge.ts), folded in graph order
// by native/delta/merge.ts, as mergeDeltas does in memory; a method without one is refused with its reason.
//
// Weights are streamed one at a time: a merged weight is computed alone (float32), an untouched one is copied as
// bytes, so a multi-GB model is never in memory at once. Everything is written into a temporary folder next to the
// destination and renamed into place at the end: a refused or failed export leaves nothing behind.
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { bytesOf, DTYPES, toFloat16Bits, toFloat32, type DType } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import { openRegularFile, readRegularFile, readTensorBytes, type TensorRef } from '../onnx/safetensors.js';
import { readModelFolder, type ModelFolder } from '../models/folder.js';
import type { ModuleRecord } from '../models/builder.js';
import type { BuiltModel, Task } from '../models/types.js';
import { loadWithDeltas, METHODS, type AppliedDelta, type DeltaConfig } from '../delta/index.js';
import { foldsInGraphOrder, type FoldStep } from '../delta/merge.js';
import { checkBase, PluginError, type Plugin } from '../plugins/format.js';
import { isInside } from '../files/paths.js';

// ---------------------------------------------------------------------------------------------------------------
// A plugin (or several, combined) on its base model: shared with the ONNX export.

export interface PluginModel {
  folder: ModelFolder;
  model: BuiltModel;
  applied: AppliedDelta;
  /** The plugins' tensors by graph value name (what a session of model.graph is fed), float32. */
  values: Record<string, HostTensor>;
  /** The same tensors by plugin name. */
  byName: Map<string, HostTensor>;
  configs: DeltaConfig[];
  task: Task;
  labels?: string[];
  maxLength?: number;
}

const HEAD_WEIGHTS = ['classifier.weight', 'classifier.out_proj.weight', 'score.weight'];

/** The config that builds the graph the plugin's tensors fit (a method may keep other tensors than it trains). */
function configFor(p: Plugin, c: DeltaConfig): DeltaConfig {
  return (METHODS.get(c.method)?.forPluginTensors?.(c, (name) => !!p.tensors[name]) ?? c) as DeltaConfig;
}

/**
 * Builds the base model with the plugins' methods (in the engine's order) and matches every delta parameter to a
 * plugin tensor: a missing, extra, duplicated or misshapen tensor is an error naming the file. Float32 graph.
 */
export function loadPluginModel(
  pluginOrList: Plugin | Plugin[],
  modelDir: string,
  opts: { force?: boolean } = {},
): PluginModel {
  const plugins = Array.isArray(pluginOrList) ? pluginOrList : [pluginOrList];
  if (plugins.length === 0) throw new Error('export: no plugin given');
  const folder = readModelFolder(modelDir);
  for (const p of plugins) checkBase(p.meta, folder, opts.force ?? false, p.file);
  const first = plugins[0];
  const task = first.meta.task;
  let labels: string[] | undefined;
  let labelsFrom = '';
  for (const p of plugins) {
    if (p.meta.task !== task)
      throw new Error(
        `${p.file}: task ${p.meta.task} differs from ${first.file}'s ${task}: plugins exported together must share a task`,
      );
    if (!p.meta.labels) continue;
    if (labels && JSON.stringify(labels) !== JSON.stringify(p.meta.labels)) {
      throw new Error(
        `${p.file}: labels ${JSON.stringify(p.meta.labels)} differ from ${labelsFrom}'s ${JSON.stringify(labels)}`,
      );
    }
    labels = p.meta.labels;
    labelsFrom = p.file;
  }
  // Without a label list, the trained head says how many classes there are.
  let numLabels = labels?.length;
  if (task === 'classification' && numLabels === undefined) {
    for (const p of plugins) for (const h of HEAD_WEIGHTS) if (p.tensors[h]) numLabels = p.tensors[h].shape[0];
  }
  const configs = plugins.flatMap((p) => p.meta.methods.map((c) => configFor(p, c)));
  const files = plugins.map((p) => p.file).join(', ');
  let built: { model: BuiltModel; applied: AppliedDelta };
  try {
    built = loadWithDeltas(
      modelDir,
      { task, numLabels: task === 'classification' ? numLabels : undefined, precision: 'float32' },
      configs,
    );
  } catch (e) {
    throw new Error(
      `${files}: cannot apply ${configs.map((c) => c.method).join(' + ')} to ${modelDir}: ${(e as Error).message}`,
      { cause: e },
    );
  }
  const { model, applied } = built;
  const owner = new Map<string, Plugin>();
  for (const p of plugins) {
    for (const name of Object.keys(p.tensors)) {
      const o = owner.get(name);
      if (o)
        throw new PluginError(
          'mismatch',
          `${p.file} and ${o.file} both hold tensor "${name}": plugins exported together must train different parameters`,
          p.file,
        );
      owner.set(name, p);
    }
  }
  const values: Record<string, HostTensor> = {};
  const byName = new Map<string, HostTensor>();
  for (const prm of applied.params) {
    const p = owner.get(prm.name);
    if (!p)
      throw new PluginError(
        'mismatch',
        `${files}: no tensor "${prm.name}", which ${prm.method} needs on ${model.architecture}`,
        first.file,
      );
    const t = p.tensors[prm.name];
    const want = applied.initial[prm.value].shape;
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new PluginError(
        'mismatch',
        `${p.file}: tensor "${prm.name}" has shape [${t.shape}], ${prm.method} on ${model.architecture} expects [${want}]`,
        p.file,
      );
    }
    if (!['float32', 'float16', 'bfloat16'].includes(t.dtype))
      throw new PluginError('mismatch', `${p.file}: tensor "${prm.name}" is ${t.dtype}, expected float32`, p.file);
    const f: HostTensor =
      t.dtype === 'float32'
        ? t
        : {
            dtype: 'float32',
            shape: t.shape,
            data: toFloat32(t.dtype, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
          };
    values[prm.value] = f;
    byName.set(prm.name, f);
    owner.delete(prm.name);
  }
  for (const [name, p] of owner) {
    throw new PluginError(
      'mismatch',
      `${p.file}: tensor "${name}" is not a parameter of ${p.meta.methods.map((c) => c.method).join(' + ')} on ${model.architecture}`,
      p.file,
    );
  }
  const maxLength = plugins.map((p) => p.meta.maxLength).find((n) => n !== undefined);
  return { folder, model, applied, values, byName, configs, task, labels, maxLength };
}

// ---------------------------------------------------------------------------------------------------------------
// Destination handling shared with the ONNX export.

/**
 * Creates the folders above `path` that do not exist yet (an export into a new folder), and returns what undoes it:
 * removing those it created, if they are still empty, when the export fails.
 */
export function makeParentFolders(path: string): () => void {
  const parent = dirname(resolve(path));
  if (existsSync(parent)) {
    if (!statSync(parent).isDirectory()) throw new Error(`${parent}: exists and is not a folder`);
    return () => {};
  }
  const first = mkdirSync(parent, { recursive: true });
  return () => {
    if (!first) return;
    for (let d = parent; d.length >= first.length; d = dirname(d)) {
      try {
        rmdirSync(d);
      } catch {
        return; // not empty (something else was put there): leave it
      }
      if (d === first) return;
    }
  };
}

/** A hidden temporary name next to `path` (same filesystem, so the final rename is atomic). */
export function siblingTemp(path: string, tag: string): string {
  return join(
    dirname(path),
    `.${basename(path)}.${tag}-${process.pid}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`,
  );
}

/** Writes all of `chunks` to an open file. */
export function writeAll(fd: number, chunk: Uint8Array): void {
  for (let off = 0; off < chunk.byteLength;) off += writeSync(fd, chunk, off, chunk.byteLength - off);
}

const COPY_CHUNK = 16 << 20;

/** Copies `length` bytes of `file` from `offset` to an open file, in 16 MiB pieces. */
export function copyRange(
  fd: number,
  file: string,
  offset: number,
  length: number,
  buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(1, length))),
): void {
  const src = openRegularFile(file);
  try {
    for (let done = 0; done < length;) {
      const n = readSync(src, buf, 0, Math.min(buf.length, length - done), offset + done);
      if (n === 0) throw new Error(`${file}: ends before byte ${offset + length} (truncated while exporting?)`);
      writeAll(fd, buf.subarray(0, n));
      done += n;
    }
  } finally {
    closeSync(src);
  }
}

function fsyncPath(path: string): void {
  try {
    const fd = openSync(path, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* some filesystems refuse fsync on directories */
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The merged export.

export interface MergedExportOptions {
  /** Largest shard in bytes (default 5 GB = 5·10⁹, transformers' save_pretrained max_shard_size="5GB"). */
  shardBytes?: number;
  /**
   * 'source' (default): every weight keeps its stored dtype; merged and trained weights are computed in float32
   * and rounded to it (round to nearest even), so a bf16/fp16 export differs from base+plugin by that rounding.
   * 'float32': every weight is written as float32 — exactly what Delta Studio computes, twice the size of fp16.
   */
  dtype?: 'float32' | 'source';
  /** Replace an existing non-empty outDir (default: refuse). */
  overwrite?: boolean;
  /** Export even if the plugin was trained on another base model. */
  force?: boolean;
  /** Called as weights are written: the fraction of weight bytes done. */
  onProgress?: (fraction: number, message: string) => void;
}

export interface MergedExportResult {
  dir: string;
  architecture: string;
  /** Every file written: the weights, the shard index, config.json, the tokenizer and generation files. */
  files: string[];
  /** The weight files, in order (one model.safetensors, or the shards). */
  weightFiles: string[];
  /** Sum of tensor bytes (the index's total_size). */
  totalSize: number;
  tensors: number;
  /** config.json's torch_dtype. */
  dtype: 'float32' | 'float16' | 'bfloat16';
  /** Weights changed by folding a delta in (LoRA, (IA)³, a BitFit norm bias). */
  merged: string[];
  /** Weights taken from the plugin as they are (trained head, BitFit biases, head-only, full). */
  replaced: string[];
  /** Computed weights rounded to a narrower stored dtype ('source' on a bf16/fp16 model). */
  rounded: string[];
  /** Weights of the folder the task's model does not read (another task's head, buffers), left out. */
  dropped: string[];
  notes: string[];
}

// Tokenizer, generation and chat files that travel with a model; weights, configs and anything else stay behind.
const CARRIED_FILE =
  /^(tokenizer\.json|tokenizer_config\.json|tokenizer\.model|special_tokens_map\.json|added_tokens\.json|vocab\.(txt|json)|merges\.txt|spiece\.model|sentencepiece\.bpe\.model|.+\.tiktoken|generation_config\.json|chat_template\.(jinja|json)|preprocessor_config\.json)$/;

/** bfloat16 bits of float32 values, rounded to nearest even (NaN kept quiet). */
export function toBfloat16Bits(src: Float32Array): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

function encode(dtype: DType, v: Float32Array): Uint8Array {
  const a =
    dtype === 'float32'
      ? v
      : dtype === 'float16'
        ? toFloat16Bits(v)
        : dtype === 'bfloat16'
          ? toBfloat16Bits(v)
          : undefined;
  if (!a) throw new Error(`export: cannot write a computed weight as ${dtype}`);
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** One weight of the export: where its bytes come from and what is done to them. */
interface Planned {
  /** The task class's name for it: in the graph, and in the exported state dict (models/naming.ts). */
  name: string;
  shape: number[];
  dtype: DType;
  ref?: TensorRef;
  /** Returns the weight's float32 values when it is computed (merged or replaced); undefined = copy as stored. */
  compute?: () => Float32Array;
}

/**
 * Writes `plugin` merged into the model at `modelDir` as a Hugging Face folder at `outDir`. Only plugins whose
 * methods become plain weights can be merged: LoRA, (IA)³, head-only, full, and BitFit where each bias has a home
 * (an existing Linear/Conv1D bias, or a LayerNorm's bias for a new norm bias). Others are refused with the reason.
 * Synchronous file work: run it off any thread that must stay responsive.
 */
export function exportMerged(
  plugin: Plugin,
  modelDir: string,
  outDir: string,
  opts: MergedExportOptions = {},
): MergedExportResult {
  const shardBytes = opts.shardBytes ?? 5e9;
  if (!(shardBytes > 0)) throw new Error(`exportMerged: shardBytes must be positive, got ${shardBytes}`);
  const dtypeMode = opts.dtype ?? 'source';
  if (dtypeMode !== 'source' && dtypeMode !== 'float32')
    throw new Error(`exportMerged: dtype must be "source" or "float32", got ${JSON.stringify(dtypeMode)}`);
  const dest = resolve(outDir);
  checkDestination(dest, modelDir, opts.overwrite ?? false);
  for (const c of plugin.meta.methods) {
    const method = METHODS.get(c.method);
    if (!method?.merge) {
      throw new Error(
        `${plugin.file}: ${c.method} cannot be merged into the base weights: ${method?.cannotMerge ?? 'it adds computation the Hugging Face architecture has no weights for'}. Export it as ONNX instead (exportOnnx), which keeps the base model and the delta apart`,
      );
    }
  }
  const pm = loadPluginModel(plugin, modelDir, { force: opts.force });
  const plan = planWeights(plugin, pm, dtypeMode);

  const undoParents = makeParentFolders(dest);
  const tmp = siblingTemp(dest, 'partial');
  try {
    mkdirSync(tmp);
    const written = writeWeights(tmp, plan.weights, shardBytes, opts.onProgress);
    const names = [...written.files];
    if (written.files.length > 1) names.push('model.safetensors.index.json');
    const cfg = exportConfig(pm, plan.torchDtype, plan.notes);
    const floats = integralFloatPaths(readRegularFile(join(pm.folder.dir, 'config.json')).toString('utf8'));
    writeDurable(join(tmp, 'config.json'), `${configJson(cfg, floats)}\n`);
    names.push('config.json');
    for (const f of readdirSync(pm.folder.dir)) {
      if (!CARRIED_FILE.test(f)) continue;
      const src = join(pm.folder.dir, f);
      if (!statSync(src).isFile()) continue;
      copyFileSync(src, join(tmp, f)); // follows symlinks (the Hugging Face cache's blobs)
      fsyncPath(join(tmp, f));
      names.push(f);
    }
    fsyncPath(tmp);
    moveIntoPlace(tmp, dest);
    return {
      dir: dest,
      architecture: pm.model.architecture,
      files: names.map((f) => join(dest, f)),
      weightFiles: written.files.map((f) => join(dest, f)),
      totalSize: written.totalSize,
      tensors: plan.weights.length,
      dtype: plan.torchDtype,
      merged: plan.merged,
      replaced: plan.replaced,
      rounded: plan.rounded,
      dropped: plan.dropped,
      notes: plan.notes,
    };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    undoParents();
    throw e;
  }
}

/** `path` with the symlinks of its longest existing part resolved (the rest does not exist yet). */
function realPathSoFar(path: string): string {
  if (existsSync(path)) return realpathSync(path);
  const up = dirname(path);
  return up === path ? path : join(realPathSoFar(up), basename(path));
}

/**
 * Refuses a destination that exists and is not an empty folder (unless overwrite), or that holds the model. A
 * destination whose folders do not exist yet is fine: they are made when the export is written.
 */
function checkDestination(dest: string, modelDir: string, overwrite: boolean): void {
  const src = existsSync(modelDir) ? realpathSync(modelDir) : resolve(modelDir);
  if (isInside(realPathSoFar(dest), src))
    throw new Error(`${dest}: the export would replace the model folder it reads (${modelDir}); choose another folder`);
  if (!existsSync(dest)) return;
  if (!statSync(dest).isDirectory()) throw new Error(`${dest}: exists and is not a folder`);
  if (readdirSync(dest).length > 0 && !overwrite)
    throw new Error(`${dest}: exists and is not empty; choose another folder or pass overwrite`);
}

/** Renames the finished temporary folder to `dest`, replacing what is there only once the new one is complete. */
function moveIntoPlace(tmp: string, dest: string): void {
  let old: string | undefined;
  if (existsSync(dest)) {
    old = siblingTemp(dest, 'old');
    renameSync(dest, old);
  }
  try {
    renameSync(tmp, dest);
  } catch (e) {
    if (old) renameSync(old, dest);
    throw e;
  }
  fsyncPath(dirname(dest));
  if (old) rmSync(old, { recursive: true, force: true });
}

function writeDurable(file: string, text: string): void {
  const fd = openSync(file, 'w', 0o644);
  try {
    writeAll(fd, Buffer.from(text, 'utf8'));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Where a JSON text writes a whole number as a float (`1.0`, `1e4`), by key path. JavaScript has one number type, so
 * JSON.stringify writes 1.0 as 1; Python reads that back as an int, and transformers 5 refuses an int in a float field
 * of a config ("initializer_factor expected float, got int"). The text is valid JSON (it was parsed already).
 */
export function integralFloatPaths(text: string): Set<string> {
  const out = new Set<string>();
  const path: (string | number)[] = [];
  const open: string[] = [];
  let key = false;
  const number = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;
  for (let i = 0; i < text.length;) {
    const c = text[i];
    if (c === '{' || c === '[') {
      open.push(c);
      path.push(c === '[' ? 0 : '');
      key = c === '{';
      i++;
    } else if (c === '}' || c === ']') {
      open.pop();
      path.pop();
      i++;
    } else if (c === ',') {
      if (open.at(-1) === '[') (path[path.length - 1] as number)++;
      else key = true;
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (key) path[path.length - 1] = JSON.parse(text.slice(i, j + 1)) as string;
      key = false;
      i = j + 1;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      number.lastIndex = i;
      const m = number.exec(text)!;
      if ((m[1] || m[2]) && Number.isInteger(Number(m[0]))) out.add(path.join('\u0001'));
      i += m[0].length;
    } else i++;
  }
  return out;
}

/** config.json text as transformers writes it: keys sorted, 2-space indent, floats of the source kept floats. */
function configJson(cfg: Record<string, unknown>, floats: Set<string>): string {
  const mark = (v: unknown, path: (string | number)[]): unknown => {
    if (Array.isArray(v)) return v.map((x, i) => mark(x, [...path, i]));
    if (v && typeof v === 'object')
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mark(x, [...path, k])]));
    // A placeholder string, replaced by the number with ".0" once stringified (1e21 and up are written with an "e").
    if (typeof v === 'number' && Number.isInteger(v) && !/e/.test(String(v)) && floats.has(path.join('\u0001')))
      return `\u0000float:${v}`;
    return v;
  };
  return JSON.stringify(sortKeys(mark(cfg, [])), null, 2).replace(/"\\u0000float:(-?\d+)"/g, '$1.0');
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
    );
  return v;
}

interface Plan {
  weights: Planned[];
  torchDtype: 'float32' | 'float16' | 'bfloat16';
  merged: string[];
  replaced: string[];
  rounded: string[];
  dropped: string[];
  notes: string[];
}

/** Decides, weight by weight, what the export writes; nothing is computed yet. */
function planWeights(plugin: Plugin, pm: PluginModel, dtypeMode: 'float32' | 'source'): Plan {
  const { model, applied, folder, byName } = pm;
  const b = model.builder;
  const mod = (name: string): ModuleRecord => {
    const r = model.modules.find((m) => m.name === name);
    if (!r) throw new Error(`export: module ${name} is not in the ${model.architecture} graph`);
    return r;
  };
  const value = (name: string): Float32Array => byName.get(name)!.data as Float32Array;
  const names = [...b.weightValues.keys()];
  const written = new Set(names);
  const refuse = (why: string): never => {
    throw new Error(
      `${plugin.file}: ${why}. Export it as ONNX instead (exportOnnx), which keeps the base model and the delta apart`,
    );
  };

  // What happens to each weight: replaced by a trained value, added to (a new parameter's place), or folded.
  const replace = new Map<string, string>(); // weight → plugin tensor holding its trained value
  const added = new Map<string, string[]>(); // base weight → new parameters added to it (BitFit norm biases)
  for (const p of applied.params) {
    if (p.existing || p.method === 'new head') {
      replace.set(p.name, p.name);
      continue;
    }
    const place = METHODS.get(p.method)?.merge?.place;
    if (!place) continue; // a fold's parameter (LoRA, (IA)³): folded below
    const at = place(p.name, model);
    if ('refused' in at) refuse(at.refused);
    else added.set(at.addTo, [...(added.get(at.addTo) ?? []), p.name]);
  }
  for (const m of applied.methods) {
    if (!METHODS.get(m.method)?.merge?.fold) continue;
    for (const name of m.modules) {
      const rec = mod(name);
      const w = `${name}.weight`;
      if (!written.has(w) || !rec.params.some((q) => q.name === w))
        refuse(
          `${m.method} changed ${name}, whose weight is tied to another (${model.architecture} stores no "${w}"); merging would have to untie them`,
        );
    }
  }
  // Each changed module's folds in graph order, by the weight (and the bias) they change.
  const folds = new Map<string, FoldStep[]>();
  const biasFolds = new Map<string, FoldStep[]>();
  for (const step of foldsInGraphOrder(model, applied, (p) => value(p.name))) {
    const { module: rec, fold } = step;
    const w = `${rec.name}.weight`,
      bias = `${rec.name}.bias`;
    folds.set(w, [...(folds.get(w) ?? []), step]);
    if (fold.bias && written.has(bias) && rec.params.some((q) => q.name === bias))
      biasFolds.set(bias, [...(biasFolds.get(bias) ?? []), step]);
  }

  const base = (name: string): Float32Array => {
    const rep = replace.get(name);
    if (rep) return Float32Array.from(value(rep));
    const ref = folder.weights.get(name);
    if (!ref) throw new Error(`export: weight "${name}" is neither in ${folder.dir} nor in ${plugin.file}`);
    return toFloat32(ref.dtype, readTensorBytes(ref));
  };

  // The dtype of the checkpoint: float32, or the source's most common float dtype (by bytes).
  const bytesBy = new Map<DType, number>();
  for (const n of names) {
    const ref = folder.weights.get(n);
    if (ref) bytesBy.set(ref.dtype, (bytesBy.get(ref.dtype) ?? 0) + ref.length);
  }
  const dominant = ([...bytesBy].sort((a, c) => c[1] - a[1])[0]?.[0] ?? 'float32') as DType;
  const torchDtype = (
    dtypeMode === 'float32' ? 'float32' : ['float16', 'bfloat16'].includes(dominant) ? dominant : 'float32'
  ) as Plan['torchDtype'];

  const merged: string[] = [],
    replaced: string[] = [],
    rounded: string[] = [];
  const weights: Planned[] = names.map((name) => {
    const ref = folder.weights.get(name);
    if (!ref && !replace.has(name))
      throw new Error(`export: weight "${name}" is neither in ${folder.dir} nor in ${plugin.file}`);
    // A trained weight brings its own shape (a new head of another label count replaces the folder's).
    const shape = replace.has(name) ? byName.get(replace.get(name)!)!.shape : ref!.shape;
    const dtype: DType = dtypeMode === 'float32' ? 'float32' : (ref?.dtype ?? torchDtype);
    const fold = folds.get(name);
    const bs = biasFolds.get(name);
    const adds = added.get(name);
    let compute: (() => Float32Array) | undefined;
    if (fold) {
      compute = () => {
        const W = base(name);
        for (const s of fold) s.fold.weight(W, s.layout, 1);
        return W;
      };
      merged.push(name);
    } else if (bs || adds) {
      compute = () => {
        const v = base(name);
        for (const a of adds ?? []) {
          const d = value(a);
          for (let i = 0; i < v.length; i++) v[i] += d[i];
        }
        for (const s of bs ?? []) s.fold.bias!(v, 1);
        return v;
      };
      merged.push(name);
    } else if (replace.has(name)) {
      compute = () => base(name);
      replaced.push(name);
    } else if (ref!.dtype !== dtype) {
      compute = () => toFloat32(ref!.dtype, readTensorBytes(ref!));
    }
    if (compute && dtype !== 'float32' && (fold || bs || adds || replace.has(name))) rounded.push(name);
    return { name, shape, dtype, ref, compute };
  });
  const dropped = [...folder.weights.keys()].filter((n) => !written.has(n));
  const notes: string[] = [];
  if (rounded.length)
    notes.push(
      `${rounded.length} computed weight(s) were rounded from float32 to ${torchDtype}; outputs differ from base+plugin by that rounding (use dtype "float32" for exact ones)`,
    );
  if (dropped.length)
    notes.push(
      `${dropped.length} weight(s) of ${folder.dir} that ${model.architecture} does not read were left out: ${dropped.slice(0, 5).join(', ')}${dropped.length > 5 ? ', …' : ''}`,
    );
  return { weights, torchDtype, merged, replaced, rounded, dropped, notes };
}

/** Shards like huggingface_hub's split_torch_state_dict_into_shards: in order, a new shard when the next weight would overflow. */
function shard(weights: Planned[], max: number): Planned[][] {
  const shards: Planned[][] = [];
  let cur: Planned[] = [],
    size = 0;
  for (const w of weights) {
    const n = w.shape.reduce((a, c) => a * c, 1) * bytesOf(w.dtype);
    if (cur.length && size + n > max) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(w);
    size += n;
  }
  if (cur.length) shards.push(cur);
  return shards;
}

function writeWeights(
  dir: string,
  weights: Planned[],
  max: number,
  onProgress: (fraction: number, message: string) => void = () => {},
): { files: string[]; totalSize: number } {
  const shards = shard(weights, max);
  const N = shards.length;
  const pad = (i: number): string => String(i).padStart(5, '0');
  const files = N === 1 ? ['model.safetensors'] : shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(N)}.safetensors`);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  const buf = Buffer.allocUnsafe(COPY_CHUNK);
  const allBytes = weights.reduce((a, w) => a + w.shape.reduce((x, c) => x * c, 1) * bytesOf(w.dtype), 0) || 1;
  let done = 0,
    lastReport = 0;
  shards.forEach((list, s) => {
    const header = Object.create(null) as Record<string, unknown>; // any weight name is a key, "__proto__" too
    header.__metadata__ = { format: 'pt' };
    let off = 0;
    for (const w of list) {
      const n = w.shape.reduce((a, c) => a * c, 1) * bytesOf(w.dtype);
      header[w.name] = { dtype: DTYPES[w.dtype].safetensors, shape: w.shape, data_offsets: [off, off + n] };
      off += n;
      weightMap[w.name] = files[s];
    }
    totalSize += off;
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
    const hbytes = Buffer.from(json, 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hbytes.byteLength));
    const fd = openSync(join(dir, files[s]), 'w', 0o644);
    try {
      writeAll(fd, len);
      writeAll(fd, hbytes);
      for (const w of list) {
        if (w.compute) {
          const bytes = encode(w.dtype, w.compute());
          if (bytes.byteLength !== w.shape.reduce((a, c) => a * c, 1) * bytesOf(w.dtype))
            throw new Error(
              `export: weight "${w.name}" came out with ${bytes.byteLength} bytes for shape [${w.shape}] of ${w.dtype}`,
            );
          writeAll(fd, bytes);
        } else {
          copyRange(fd, w.ref!.realFile, w.ref!.offset, w.ref!.length, buf);
        }
        done += w.shape.reduce((a, c) => a * c, 1) * bytesOf(w.dtype);
        // At most ~100 reports per export, however many weights.
        if (done / allBytes - lastReport >= 0.01 || done === allBytes) {
          lastReport = done / allBytes;
          onProgress(lastReport, `${files[s]}: ${(done / 1e6).toFixed(0)} of ${(allBytes / 1e6).toFixed(0)} MB`);
        }
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  });
  if (N > 1) {
    const index = {
      metadata: { total_size: totalSize },
      weight_map: Object.fromEntries(
        Object.keys(weightMap)
          .sort()
          .map((k) => [k, weightMap[k]]),
      ),
    };
    writeDurable(join(dir, 'model.safetensors.index.json'), `${JSON.stringify(index, null, 2)}\n`);
  }
  return { files, totalSize };
}

/** config.json for the exported class: architectures, labels and problem type for a head, torch_dtype. */
function exportConfig(pm: PluginModel, torchDtype: string, notes: string[]): Record<string, unknown> {
  const cfg: Record<string, unknown> = { ...pm.folder.config };
  const { model, task } = pm;
  cfg.architectures = [model.architecture];
  cfg.torch_dtype = torchDtype;
  if ('dtype' in cfg) cfg.dtype = torchDtype; // transformers ≥ 4.56 writes "dtype"
  if (task === 'classification' || task === 'regression') {
    const n = task === 'regression' ? 1 : (model.numLabels ?? pm.labels?.length ?? 2);
    const labels =
      task === 'classification' && pm.labels?.length === n
        ? pm.labels
        : Array.from({ length: n }, (_, i) => `LABEL_${i}`);
    cfg.id2label = Object.fromEntries(labels.map((l, i) => [String(i), l]));
    cfg.label2id = Object.fromEntries(labels.map((l, i) => [l, i]));
    cfg.num_labels = n;
    cfg.problem_type = task === 'regression' ? 'regression' : 'single_label_classification';
    if (
      model.architecture !== 'BertForSequenceClassification' &&
      model.architecture !== 'RobertaForSequenceClassification' &&
      (cfg.pad_token_id === undefined || cfg.pad_token_id === null)
    ) {
      notes.push(
        `config.json has no pad_token_id: transformers' ${model.architecture} then handles batches of one only (it finds each row's last token by pad_token_id; Delta Studio uses the attention mask)`,
      );
    }
  }
  return cfg;
}
