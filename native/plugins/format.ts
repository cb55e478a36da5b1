// The delta plugin file (.delta): one safetensors file holding only the delta parameters (and a trained task head),
// with metadata that says what it is — format version, methods and their config, task and labels, the base model's
// fingerprint, the run and version that made it, its metrics — and a sha256 of the tensor bytes, so a truncated or
// tampered file is refused on load. Reading one parses JSON and copies bytes: it never executes code.
import { createHash } from 'node:crypto';
import { closeSync, readSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { viewAs, bytesOf, DTYPES, toFloat32 } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import {
  describeName,
  describeValue,
  openRegularFile,
  parseJson,
  readSafetensorsHeader,
  readTensorBytes,
  writeSafetensors,
} from '../onnx/safetensors.js';
import { readModelFolder, type ModelFolder } from '../models/folder.js';
import { classNameOf } from '../models/naming.js';
import { parseDeltaConfig, type DeltaConfig } from '../delta/index.js';
import { headOf, type Task } from '../models/types.js';

export const PLUGIN_FORMAT = 'delta-studio-plugin';
export const PLUGIN_FORMAT_VERSION = 1;
export const PLUGIN_EXTENSION = '.delta';

export type PluginErrorCode =
  | 'not-a-plugin'
  | 'truncated'
  | 'tampered'
  | 'newer-format'
  | 'wrong-base'
  | 'bad-metadata'
  | 'bad-values'
  | 'mismatch';

export class PluginError extends Error {
  constructor(
    readonly code: PluginErrorCode,
    message: string,
    readonly file?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'PluginError';
  }
}

export interface BaseModelInfo {
  /** modelFingerprint() of the folder the delta was trained on. */
  fingerprint: string;
  modelType: string;
  /** The folder's name, for people (the fingerprint is what is compared). */
  name: string;
}

export interface PluginMeta {
  formatVersion: number;
  methods: DeltaConfig[];
  task: Task;
  labels?: string[];
  base: BaseModelInfo;
  /** Plugin name and version in the workspace that registered it (absent for a file made outside one). */
  plugin?: string;
  version?: number;
  runId?: string;
  metrics: Record<string, number>;
  /** Token limit the delta was trained with (a soft prompt's or prefix's positions depend on it). */
  maxLength?: number;
  createdAt: string;
  /** sha256 of the tensor bytes (the file after its header), hex. */
  tensorsSha256: string;
}

export interface Plugin {
  file: string;
  meta: PluginMeta;
  /** Delta parameters by their plugin name (native/delta's DeltaParam.name). */
  tensors: Record<string, HostTensor>;
}

// Keys of config.json that say how a file was saved, not what the model computes.
const BOOKKEEPING_KEYS = new Set([
  '_name_or_path',
  'transformers_version',
  'torch_dtype',
  'dtype',
  'use_cache',
  '_commit_hash',
]);
const WINDOWS = 8;
const WINDOW_BYTES = 64;

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/**
 * A base model's fingerprint, cheap on multi-GB models. It covers config.json (minus the bookkeeping keys above),
 * every tensor's name, dtype and shape, and 8 windows of 64 bytes spread evenly over every tensor's data (start and
 * end included): 512 bytes read per tensor, about 150 KB for a 7B Llama, whatever its size. Any fine-tune changes
 * (almost) every value and so the sampled bytes; a different dtype or architecture changes the header part. It does
 * not cover the tokenizer files, nor an edit confined to bytes between windows.
 */
export function modelFingerprint(dirOrFolder: string | ModelFolder): string {
  const folder = typeof dirOrFolder === 'string' ? readModelFolder(dirOrFolder) : dirOrFolder;
  const h = createHash('sha256');
  h.update(`${PLUGIN_FORMAT}/fingerprint-v1\n`);
  const cfg = Object.fromEntries(Object.entries(folder.config).filter(([k]) => !BOOKKEEPING_KEYS.has(k)));
  h.update(canonicalJson(cfg));
  // The names as the files spell them (ref.name), not as the task class does: the checkpoint is what is identified.
  const refs = [...folder.weights.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const fds = new Map<string, number>();
  const buf = Buffer.alloc(WINDOW_BYTES);
  try {
    for (const ref of refs) {
      h.update(`\n${ref.name}:${ref.dtype}:[${ref.shape.join(',')}]:`);
      let fd = fds.get(ref.realFile);
      if (fd === undefined) fds.set(ref.realFile, (fd = openRegularFile(ref.realFile)));
      const span = Math.max(0, ref.length - WINDOW_BYTES);
      for (let w = 0; w < WINDOWS; w++) {
        const at = ref.offset + Math.floor((span * w) / (WINDOWS - 1));
        const n = readSync(fd, buf, 0, Math.min(WINDOW_BYTES, ref.length), at);
        h.update(buf.subarray(0, n));
        if (ref.length <= WINDOW_BYTES) break;
      }
    }
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
  return h.digest('hex');
}

/** sha256 of a whole file, streamed in 4 MiB pieces. */
export function fileSha256(file: string): string {
  const h = createHash('sha256');
  const fd = openRegularFile(file);
  const buf = Buffer.alloc(4 << 20);
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

function tensorsDigest(tensors: Record<string, HostTensor>): string {
  const h = createHash('sha256');
  // writeSafetensors lays tensors out in name order with no gaps: this is exactly the file's data section.
  for (const name of Object.keys(tensors).sort()) {
    const d = tensors[name].data;
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex');
}

/** The first element of a float tensor that is NaN or infinite, or -1 (other dtypes have neither). */
function firstNonFinite(t: HostTensor): number {
  const d = t.data;
  let x: ArrayLike<number>;
  if (d instanceof Float32Array || d instanceof Float64Array) x = d;
  else if (t.dtype === 'float16' || t.dtype === 'bfloat16')
    x = toFloat32(t.dtype, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  else return -1;
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return i;
  return -1;
}

/** Refuses a tensor holding NaN or infinity: such a delta makes every output NaN (null in JSON). */
function checkFinite(file: string, name: string, t: HostTensor): void {
  const at = firstNonFinite(t);
  if (at >= 0)
    throw new PluginError(
      'bad-values',
      `${file}: tensor "${name}" holds a NaN or infinite value (element ${at}); a plugin's weights must be finite numbers`,
      file,
    );
}

/** Writes a plugin atomically; returns its sha256 and size. */
export function writePlugin(
  file: string,
  meta: Omit<PluginMeta, 'tensorsSha256' | 'formatVersion'>,
  tensors: Record<string, HostTensor>,
): { sha256: string; size: number; meta: PluginMeta } {
  if (Object.keys(tensors).length === 0)
    throw new PluginError('bad-metadata', `${file}: a plugin needs at least one tensor`, file);
  for (const [name, t] of Object.entries(tensors)) checkFinite(file, name, t);
  // JSON has no NaN or infinity (JSON.stringify writes null): such a metric has no value to keep.
  const metrics = Object.fromEntries(Object.entries(meta.metrics).filter(([, v]) => Number.isFinite(v)));
  const full: PluginMeta = {
    ...meta,
    metrics,
    formatVersion: PLUGIN_FORMAT_VERSION,
    tensorsSha256: tensorsDigest(tensors),
  };
  const md: Record<string, string> = {
    format: PLUGIN_FORMAT,
    format_version: String(PLUGIN_FORMAT_VERSION),
    methods: JSON.stringify(full.methods),
    task: full.task,
    base_model: JSON.stringify(full.base),
    metrics: JSON.stringify(full.metrics),
    created_at: full.createdAt,
    tensors_sha256: full.tensorsSha256,
  };
  if (full.labels) md.labels = JSON.stringify(full.labels);
  if (full.plugin !== undefined) md.plugin = full.plugin;
  if (full.version !== undefined) md.version = String(full.version);
  if (full.runId !== undefined) md.run_id = full.runId;
  if (full.maxLength !== undefined) md.max_length = String(full.maxLength);
  writeSafetensors(file, tensors, md);
  return { sha256: fileSha256(file), size: statSync(file).size, meta: full };
}

function parseJsonField<T>(
  file: string,
  md: Record<string, string>,
  key: string,
  check: (v: unknown) => boolean,
  want: string,
): T {
  let v: unknown;
  try {
    v = parseJson(md[key], `${file}: metadata "${key}"`);
  } catch (e) {
    throw new PluginError('bad-metadata', (e as Error).message, file, { cause: e });
  }
  if (!check(v)) throw new PluginError('bad-metadata', `${file}: metadata "${key}" must be ${want}`, file);
  return v as T;
}

/** Reads only a plugin's metadata (header), checking the format but not the tensor digest. */
export function readPluginMeta(file: string): PluginMeta {
  let h;
  try {
    h = readSafetensorsHeader(file);
  } catch (e) {
    const msg = (e as Error).message;
    throw new PluginError(
      /truncated|claims/.test(msg) ? 'truncated' : 'not-a-plugin',
      `${file}: not a readable plugin: ${msg}`,
      file,
      { cause: e },
    );
  }
  const md = h.metadata;
  if (md.format !== PLUGIN_FORMAT)
    throw new PluginError(
      'not-a-plugin',
      `${file}: not a Delta Studio plugin (its metadata "format" is ${describeName(md.format ?? null)}, expected "${PLUGIN_FORMAT}")`,
      file,
    );
  const fv = Number(md.format_version);
  if (!Number.isInteger(fv) || fv < 1)
    throw new PluginError(
      'bad-metadata',
      `${file}: metadata "format_version" must be a positive integer, got ${describeName(md.format_version)}`,
      file,
    );
  if (fv > PLUGIN_FORMAT_VERSION)
    throw new PluginError(
      'newer-format',
      `${file}: plugin format version ${fv} was written by a newer Delta Studio (this one reads up to ${PLUGIN_FORMAT_VERSION}); update Delta Studio`,
      file,
    );
  for (const k of ['methods', 'task', 'base_model', 'tensors_sha256', 'created_at']) {
    if (typeof md[k] !== 'string') throw new PluginError('bad-metadata', `${file}: metadata "${k}" is missing`, file);
  }
  const rawMethods = parseJsonField<unknown[]>(file, md, 'methods', Array.isArray, 'a list of delta configs');
  let methods: DeltaConfig[];
  try {
    methods = parseDeltaConfig(rawMethods, `${file}: metadata "methods"`);
  } catch (e) {
    throw new PluginError('bad-metadata', (e as Error).message, file, { cause: e });
  }
  const task = headOf(md.task);
  if (!task)
    throw new PluginError(
      'bad-metadata',
      `${file}: metadata "task" must be classification, regression, causal-lm or seq2seq, got ${describeName(md.task)}`,
      file,
    );
  const base = parseJsonField<BaseModelInfo>(
    file,
    md,
    'base_model',
    (v) =>
      !!v && typeof (v as BaseModelInfo).fingerprint === 'string' && typeof (v as BaseModelInfo).modelType === 'string',
    'an object with fingerprint and modelType',
  );
  const meta: PluginMeta = {
    formatVersion: fv,
    methods,
    task,
    base,
    metrics: md.metrics === undefined ? {} : parseMetrics(file, md),
    createdAt: md.created_at,
    tensorsSha256: md.tensors_sha256,
  };
  if (md.labels !== undefined)
    meta.labels = parseJsonField(
      file,
      md,
      'labels',
      (v) => Array.isArray(v) && v.every((s) => typeof s === 'string'),
      'a list of strings',
    );
  if (md.plugin !== undefined) meta.plugin = md.plugin;
  if (md.version !== undefined) meta.version = positiveInteger(file, md, 'version');
  if (md.run_id !== undefined) meta.runId = md.run_id;
  if (md.max_length !== undefined) meta.maxLength = positiveInteger(file, md, 'max_length');
  return meta;
}

function positiveInteger(file: string, md: Record<string, string>, key: string): number {
  const v = Number(md[key]);
  if (!Number.isInteger(v) || v < 1)
    throw new PluginError('bad-metadata', `${file}: metadata "${key}" must be a positive integer`, file);
  return v;
}

/** The metrics: finite numbers by name (null, what an older writer made of NaN, is no value). */
function parseMetrics(file: string, md: Record<string, string>): Record<string, number> {
  const raw = parseJsonField<Record<string, unknown>>(
    file,
    md,
    'metrics',
    (v) => !!v && typeof v === 'object' && !Array.isArray(v),
    'an object of numbers',
  );
  const out: [string, number][] = [];
  for (const [k, v] of Object.entries(raw)) {
    if (v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new PluginError(
        'bad-metadata',
        `${file}: metadata "metrics": "${k}" must be a number, got ${describeValue(v)}`,
        file,
      );
    out.push([k, v]);
  }
  return Object.fromEntries(out);
}

/** Reads and verifies a plugin: format, metadata, and the sha256 of its tensor bytes. */
export function readPlugin(file: string): Plugin {
  const meta = readPluginMeta(file);
  const h = readSafetensorsHeader(file);
  const size = statSync(h.realFile).size;
  const dataBytes = [...h.tensors.values()].reduce((a, t) => a + t.length, 0);
  if (size !== h.headerBytes + dataBytes) {
    throw new PluginError(
      size < h.headerBytes + dataBytes ? 'truncated' : 'tampered',
      `${file}: ${size} bytes on disk, the header describes ${h.headerBytes + dataBytes}: the file is truncated or was changed`,
      file,
    );
  }
  // Null prototype: a tensor named "__proto__" is kept as one (and then refused by name), never silently lost.
  const tensors = Object.create(null) as Record<string, HostTensor>;
  const fileName = new Map<string, string>();
  const digest = createHash('sha256');
  for (const ref of [...h.tensors.values()].sort((a, b) => a.offset - b.offset)) {
    const bytes = readTensorBytes(ref);
    digest.update(bytes);
    if (!Object.hasOwn(DTYPES, ref.dtype) || bytes.byteLength % bytesOf(ref.dtype) !== 0)
      throw new PluginError('bad-metadata', `${file}: tensor "${ref.name}" has an unusable dtype`, file);
    // Plugins trained before weights took their class's names may say h.0.… where the model says transformer.h.0.…
    const name = classNameOf(meta.base.modelType, ref.name);
    const twin = fileName.get(name);
    if (twin !== undefined)
      throw new PluginError(
        'bad-metadata',
        `${file}: tensors "${twin}" and "${ref.name}" are the same parameter`,
        file,
      );
    fileName.set(name, ref.name);
    tensors[name] = { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, bytes) };
  }
  const got = digest.digest('hex');
  if (got !== meta.tensorsSha256) {
    throw new PluginError(
      'tampered',
      `${file}: the tensor bytes have sha256 ${got.slice(0, 16)}…, the plugin says ${meta.tensorsSha256.slice(0, 16)}…: the file was damaged or changed after it was written; do not use it`,
      file,
    );
  }
  for (const [name, t] of Object.entries(tensors)) checkFinite(file, fileName.get(name)!, t);
  return { file, meta, tensors };
}

/** Refuses a plugin trained on another base model unless forced, showing both fingerprints. */
export function checkBase(
  meta: PluginMeta,
  folder: string | ModelFolder,
  force = false,
  where = 'plugin',
): { fingerprint: string; matches: boolean } {
  const f = typeof folder === 'string' ? readModelFolder(folder) : folder;
  const fingerprint = modelFingerprint(f);
  const matches = fingerprint === meta.base.fingerprint;
  if (!matches && !force) {
    throw new PluginError(
      'wrong-base',
      `${where} was trained on another base model: it expects "${meta.base.name}" (${meta.base.modelType}, fingerprint ${meta.base.fingerprint.slice(0, 16)}), but ${basename(f.dir)} (${String(f.config.model_type)}) has fingerprint ${fingerprint.slice(0, 16)}. Use the model it was trained on, or force it (outputs may be meaningless).`,
    );
  }
  return { fingerprint, matches };
}
