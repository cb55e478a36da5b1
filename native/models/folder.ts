// Reads a Hugging Face model folder as it is: config.json, single or sharded safetensors (referenced in place).
// Weights are keyed by the names of the class a user loads (naming.ts): a checkpoint saved from the bare backbone
// (GPT2Model: h.0.…) is read as its task class names it (transformer.h.0.…).
import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describeValue, readJsonFile, readSafetensorsHeader, type TensorRef } from '../onnx/safetensors.js';
import { backbonePrefix, classNameOf } from './naming.js';

export type HfConfig = Record<string, unknown> & { model_type?: string; architectures?: string[] };

export interface ModelFolder {
  dir: string;
  config: HfConfig;
  /** Every weight by the name its task class gives it, pointing into its safetensors file (ref.name: the file's name). */
  weights: Map<string, TensorRef>;
  files: string[];
  /** The backbone prefix ("transformer.") the file's names were read with, when it saved them without it. */
  addedPrefix?: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function readModelFolder(dir: string): ModelFolder {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${dir}: not a folder`);
  const cfgFile = join(dir, 'config.json');
  if (!existsSync(cfgFile))
    throw new Error(`${dir}: no config.json (a Hugging Face model folder has config.json and *.safetensors)`);
  const config = readJsonFile(cfgFile);
  if (!isObject(config)) throw new Error(`${cfgFile}: expected a JSON object`);
  const fileWeights = new Map<string, TensorRef>();
  const files: string[] = [];
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    const idx = readJsonFile(index);
    const map = isObject(idx) ? idx.weight_map : undefined;
    if (!isObject(map)) throw new Error(`${index}: no weight_map (an object of tensor name → shard file)`);
    for (const [name, shard] of Object.entries(map)) {
      // Shards sit beside the index: a path would read a file outside the folder.
      if (typeof shard !== 'string' || shard !== basename(shard) || shard === '..' || shard === '.')
        throw new Error(`${index}: tensor "${name}" names its shard as ${describeValue(shard)}, not a file name`);
    }
    const shards = [...new Set(Object.values(map) as string[])];
    for (const shard of shards) {
      const file = join(dir, shard);
      if (!existsSync(file)) throw new Error(`${index} names shard "${shard}", which is missing from ${dir}`);
      const h = readSafetensorsHeader(file);
      files.push(file);
      for (const [name, ref] of h.tensors) fileWeights.set(name, ref);
    }
    for (const [name, shard] of Object.entries(map)) {
      if (!fileWeights.has(name))
        throw new Error(`${index}: tensor "${name}" is said to be in ${String(shard)} but is not there`);
    }
  } else {
    const file = join(dir, 'model.safetensors');
    if (!existsSync(file))
      throw new Error(
        `${dir}: no model.safetensors or model.safetensors.index.json (pytorch_model.bin is not read: it is a pickle and can run code)`,
      );
    const h = readSafetensorsHeader(file);
    files.push(file);
    for (const [name, ref] of h.tensors) fileWeights.set(name, ref);
  }
  const weights = new Map<string, TensorRef>();
  let added = false;
  for (const [name, ref] of fileWeights) {
    const cls = classNameOf(config.model_type, name);
    const twin = weights.get(cls);
    if (twin)
      throw new Error(
        `${dir}: holds both "${twin.name}" and "${name}", which are the same weight of the model (${cls}); keep one`,
      );
    added ||= cls !== name;
    weights.set(cls, ref);
  }
  const folder: ModelFolder = { dir, config: config as HfConfig, weights, files };
  if (added) folder.addedPrefix = backbonePrefix(config.model_type);
  return folder;
}

/** Typed access to config.json with a clear error for a missing or mistyped field. */
export class ConfigReader {
  constructor(
    readonly config: HfConfig,
    readonly where: string,
  ) {}
  num(key: string, dflt?: number): number {
    const v = this.config[key];
    if (v === undefined || v === null) {
      if (dflt === undefined) throw new Error(`${this.where}: config.json has no "${key}"`);
      return dflt;
    }
    if (typeof v !== 'number')
      throw new Error(`${this.where}: config.json "${key}" must be a number, got ${describeValue(v)}`);
    return v;
  }
  str(key: string, dflt?: string): string {
    const v = this.config[key];
    if (v === undefined || v === null) {
      if (dflt === undefined) throw new Error(`${this.where}: config.json has no "${key}"`);
      return dflt;
    }
    if (typeof v !== 'string')
      throw new Error(`${this.where}: config.json "${key}" must be a string, got ${describeValue(v)}`);
    return v;
  }
  bool(key: string, dflt: boolean): boolean {
    const v = this.config[key];
    return typeof v === 'boolean' ? v : dflt;
  }
}
