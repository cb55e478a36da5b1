// Exporting base model + plugin(s) as one inference ONNX model: the batch inputs (input_ids, attention_mask, …, no
// labels) in, `logits` out, no dropout, no loss. 'baked' holds the plugin tensors as weights; 'inputs' takes the
// delta parameters as graph inputs named by their plugin names, so any plugin of the same structure can be fed to
// the same model (hot-swap), described by a sidecar JSON. Weights are self-contained: inside the .onnx under
// ~1.8 GB (protobuf's 2 GB limit with room for the graph), else in `<file>.data` next to it as ONNX external data
// (location, offset, length) — never pointing into the user's safetensors, which serialize() does for training.
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import onnxProto from 'onnx-proto';
import { bytesView, viewAs, type DType } from '../onnx/dtype.js';
import type { Graph, HostTensor } from '../onnx/graph.js';
import { readTensorBytes, type TensorRef } from '../onnx/safetensors.js';
import type { Dim } from '../onnx/shape.js';
import { serialize } from '../onnx/serialize.js';
import { withoutDropout } from '../train/dropout.js';
import type { Plugin } from '../plugins/format.js';
import { copyRange, loadPluginModel, makeParentFolders, siblingTemp, writeAll } from './merged.js';

const { onnx } = onnxProto;

/** Weights up to this many bytes are embedded in the .onnx; more go to `<file>.data`. */
export const EMBED_LIMIT = 1.8e9;
// Tensors smaller than this stay inline even with external data (as onnx's save_model size_threshold does).
const INLINE_BELOW = 1024;

export interface OnnxExportOptions {
  /** 'baked' (default): plugin tensors are weights. 'inputs': they are graph inputs named by their plugin names. */
  mode?: 'baked' | 'inputs';
  /** Replace an existing file (and its .data / .json companions). */
  overwrite?: boolean;
  /** Export even if a plugin was trained on another base model. */
  force?: boolean;
  /** Weight bytes above which weights go to external data (default EMBED_LIMIT; tests lower it). */
  embedLimitBytes?: number;
}

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: Dim[];
}

export interface OnnxExportResult {
  file: string;
  /** `<file>.data` when the weights are external. */
  dataFile?: string;
  /** `<file>.json`: inputs, outputs, delta inputs, labels, plugins. */
  sidecar: string;
  mode: 'baked' | 'inputs';
  /** Size of the .onnx and of the external data (0 when embedded). */
  bytes: number;
  dataBytes: number;
  /** The batch inputs (what a tokenizer gives), in graph order. */
  inputs: TensorInfo[];
  /** The delta parameters as inputs ('inputs' mode; empty when baked). */
  deltaInputs: (TensorInfo & { method: string })[];
  outputs: TensorInfo[];
  /** Ops outside the standard ONNX domain (onnxruntime's), as domain:op. */
  customOps: string[];
}

const info = (g: Graph, name: string): TensorInfo => {
  const v = g.value(name);
  return { name, dtype: v.dtype, shape: [...v.shape] };
};

/**
 * Writes base + plugins as an inference ONNX model at `outFile` (atomically: every file is written under a
 * temporary name, then renamed, the .onnx last). Several plugins combine as their methods do in one delta config.
 *
 * The model is for onnxruntime (any provider; opset 20, IR 9): besides standard ops it may contain the contrib ops
 * com.microsoft FusedMatMul (every projection), QuickGelu (SiLU: Llama-family MLPs, adapters) and FastGelu, and
 * SimplifiedLayerNormalization (RMSNorm: Llama, Qwen2, T5), which onnxruntime registers in the default domain.
 * Frozen weights keep their stored dtype (bf16/fp16 ones are cast to float32 in the graph). Batch and sequence
 * dimensions stay symbolic.
 */
export function exportOnnx(
  plugins: Plugin[] | Plugin,
  modelDir: string,
  outFile: string,
  opts: OnnxExportOptions = {},
): OnnxExportResult {
  const mode = opts.mode ?? 'baked';
  if (mode !== 'baked' && mode !== 'inputs')
    throw new Error(`exportOnnx: mode must be "baked" or "inputs", got ${JSON.stringify(mode)}`);
  const file = resolve(outFile);
  const dataFile = `${file}.data`,
    sidecar = `${file}.json`;
  if (existsSync(file) && statSync(file).isDirectory())
    throw new Error(`${file}: is a folder; give the path of the .onnx file to write`);
  if (!opts.overwrite) {
    for (const f of [file, dataFile, sidecar])
      if (existsSync(f)) throw new Error(`${f}: exists; choose another file or pass overwrite`);
  }
  const list = Array.isArray(plugins) ? plugins : [plugins];
  const pm = loadPluginModel(list, modelDir, { force: opts.force });
  const { model, applied } = pm;

  const g = withoutDropout(model.graph);
  g.outputs.length = 0;
  g.output(model.logits);
  for (const p of applied.params) {
    if (!g.initializers.has(p.value))
      throw new Error(`exportOnnx: delta parameter "${p.name}" is not a weight of the ${model.architecture} graph`);
    if (mode === 'baked') g.initializers.set(p.value, { kind: 'host', tensor: pm.values[p.value] });
    else g.promoteToInput(p.value);
  }
  g.prune();
  const deltaNames = new Set<string>();
  if (mode === 'inputs') {
    for (const p of applied.params) {
      if (!g.inputs.includes(p.value)) continue; // a parameter the logits do not depend on
      if (p.value !== p.name) renameInput(g, p.value, p.name);
      deltaNames.add(p.name);
    }
  }
  const batchInputs = g.inputs.filter((n) => !deltaNames.has(n));
  const unknown = batchInputs.filter((n) => !model.inputs.includes(n) || n === 'labels');
  if (unknown.length)
    throw new Error(`exportOnnx: the inference graph still reads ${unknown.join(', ')}; expected only batch inputs`);

  const customOps = [
    ...new Set(
      g.nodes
        .filter((n) => n.domain !== '' || n.op === 'SimplifiedLayerNormalization')
        .map((n) => `${n.domain || 'ai.onnx'}:${n.op}`),
    ),
  ].sort();
  const description = {
    format: 'delta-studio-onnx',
    version: 1,
    model: basename(file),
    mode,
    task: pm.task,
    labels: pm.labels ?? null,
    maxLength: pm.maxLength ?? null,
    architecture: model.architecture,
    base: { modelType: model.modelType, name: basename(resolve(modelDir)), fingerprint: list[0].meta.base.fingerprint },
    plugins: list.map((p) => ({
      file: basename(p.file),
      plugin: p.meta.plugin ?? null,
      version: p.meta.version ?? null,
      methods: p.meta.methods,
      tensorsSha256: p.meta.tensorsSha256,
    })),
    inputs: batchInputs.map((n) => info(g, n)),
    deltaInputs: [...deltaNames].map((n) => ({
      ...info(g, n),
      method: applied.params.find((p) => p.name === n)!.method,
    })),
    outputs: g.outputs.map((n) => info(g, n)),
    customOps,
    externalData: null as string | null,
  };

  let weightBytes = 0;
  for (const init of g.initializers.values())
    weightBytes += init.kind === 'host' ? init.tensor.data.byteLength : init.ref.length;
  const external = weightBytes > (opts.embedLimitBytes ?? EMBED_LIMIT);
  if (external) description.externalData = basename(dataFile);

  const undoParents = makeParentFolders(file);
  const temps: string[] = [];
  try {
    let dataBytes = 0;
    if (external) {
      const tmp = siblingTemp(dataFile, 'partial');
      temps.push(tmp);
      dataBytes = writeExternal(g, tmp, dataFile);
    } else {
      embedAll(g);
    }
    const ser = serialize(
      g,
      `Delta Studio export: ${model.architecture} + ${list.map((p) => p.meta.methods.map((c) => c.method).join('+')).join(', ')} (${mode})`,
    );
    if (ser.externalFolder && ser.externalFolder !== dirname(file))
      throw new Error(`exportOnnx: a weight still points into ${ser.externalFolder}`);
    // Appending an encoded field merges into a protobuf message: this adds metadata_props without re-encoding.
    const meta = onnx.ModelProto.encode({
      metadataProps: [
        {
          key: 'delta_studio',
          value: JSON.stringify({
            mode,
            task: pm.task,
            labels: pm.labels,
            methods: pm.configs,
            maxLength: pm.maxLength,
          }),
        },
      ],
    }).finish();
    const onnxTmp = siblingTemp(file, 'partial');
    temps.push(onnxTmp);
    writeDurable(onnxTmp, [ser.bytes, meta]);
    const jsonTmp = siblingTemp(sidecar, 'partial');
    temps.push(jsonTmp);
    writeDurable(jsonTmp, [Buffer.from(`${JSON.stringify(description, null, 2)}\n`, 'utf8')]);
    // The .onnx goes last: until it is renamed, the destination holds the previous export (or nothing).
    if (external) renameSync(temps[0], dataFile);
    renameSync(jsonTmp, sidecar);
    renameSync(onnxTmp, file);
    if (!external) rmSync(dataFile, { force: true }); // an earlier export's data, now stale
    fsyncDir(dirname(file));
    return {
      file,
      dataFile: external ? dataFile : undefined,
      sidecar,
      mode,
      bytes: statSync(file).size,
      dataBytes,
      inputs: description.inputs,
      deltaInputs: description.deltaInputs,
      outputs: description.outputs,
      customOps,
    };
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    undoParents();
    throw e;
  }
}

/** Renames a graph input (and every use of it). */
function renameInput(g: Graph, from: string, to: string): void {
  if (
    g.initializers.has(to) ||
    g.inputs.includes(to) ||
    g.nodes.some((n) => n.inputs.includes(to) || n.outputs.includes(to))
  ) {
    throw new Error(`exportOnnx: cannot name the input "${from}" "${to}": the graph uses that name for another value`);
  }
  const v = g.value(from);
  g.values.delete(to); // a value that prune() left without readers (e.g. the bf16 original of a trained weight)
  g.values.set(to, { ...v, name: to });
  g.inputs[g.inputs.indexOf(from)] = to;
  g.replaceUses(from, to);
  g.values.delete(from);
}

/** Reads every external weight into the graph: the .onnx holds them all. */
function embedAll(g: Graph): void {
  for (const [name, init] of g.initializers) {
    if (init.kind === 'external') g.initializers.set(name, { kind: 'host', tensor: readRef(init.ref) });
  }
}

function readRef(ref: TensorRef): HostTensor {
  return { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, readTensorBytes(ref)) };
}

/**
 * Streams every weight of at least INLINE_BELOW bytes into `tmp` (to be renamed `dataFile`) and points the graph's
 * initializers at it; smaller ones become inline. Offsets are aligned (4 KiB for large tensors) for memory mapping.
 */
function writeExternal(g: Graph, tmp: string, dataFile: string): number {
  const fd = openSync(tmp, 'w', 0o644);
  let off = 0;
  try {
    for (const [name, init] of g.initializers) {
      const length = init.kind === 'host' ? init.tensor.data.byteLength : init.ref.length;
      if (length < INLINE_BELOW) {
        if (init.kind === 'external') g.initializers.set(name, { kind: 'host', tensor: readRef(init.ref) });
        continue;
      }
      const align = length >= 1 << 20 ? 4096 : 64;
      const pad = (align - (off % align)) % align;
      if (pad) writeAll(fd, new Uint8Array(pad));
      off += pad;
      if (init.kind === 'host') writeAll(fd, bytesView(init.tensor.data));
      else copyRange(fd, init.ref.realFile, init.ref.offset, length);
      const t = init.kind === 'host' ? init.tensor : init.ref;
      // serialize() names the file by basename(realFile) and the folder by its dirname: both the final ones.
      g.initializers.set(name, {
        kind: 'external',
        ref: { name, dtype: t.dtype, shape: t.shape, file: dataFile, realFile: dataFile, offset: off, length },
      });
      off += length;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return off;
}

function writeDurable(path: string, chunks: Uint8Array[]): void {
  const fd = openSync(path, 'w', 0o644);
  try {
    for (const c of chunks) writeAll(fd, c);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* some filesystems refuse fsync on directories */
  }
}
