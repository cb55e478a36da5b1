// Reads a Hugging Face model folder as it is: config.json, single or sharded safetensors (referenced in place).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensorsHeader, type TensorRef } from '../onnx/safetensors.js';

export type HfConfig = Record<string, unknown> & { model_type?: string; architectures?: string[] };

export interface ModelFolder {
  dir: string;
  config: HfConfig;
  /** Every weight by its Hugging Face name, pointing into its safetensors file. */
  weights: Map<string, TensorRef>;
  files: string[];
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as Error).message})`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

export function readModelFolder(dir: string): ModelFolder {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${dir}: not a folder`);
  const cfgFile = join(dir, 'config.json');
  if (!existsSync(cfgFile))
    throw new Error(`${dir}: no config.json (a Hugging Face model folder has config.json and *.safetensors)`);
  const config = readJson(cfgFile) as HfConfig;
  if (typeof config !== 'object' || config === null || Array.isArray(config))
    throw new Error(`${cfgFile}: expected a JSON object`);
  const weights = new Map<string, TensorRef>();
  const files: string[] = [];
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    const idx = readJson(index) as { weight_map?: Record<string, string> };
    if (!idx.weight_map || typeof idx.weight_map !== 'object') throw new Error(`${index}: no weight_map`);
    const shards = [...new Set(Object.values(idx.weight_map))];
    for (const shard of shards) {
      const file = join(dir, shard);
      if (!existsSync(file)) throw new Error(`${index} names shard "${shard}", which is missing from ${dir}`);
      const h = readSafetensorsHeader(file);
      files.push(file);
      for (const [name, ref] of h.tensors) weights.set(name, ref);
    }
    for (const [name, shard] of Object.entries(idx.weight_map)) {
      if (!weights.has(name)) throw new Error(`${index}: tensor "${name}" is said to be in ${shard} but is not there`);
    }
  } else {
    const file = join(dir, 'model.safetensors');
    if (!existsSync(file))
      throw new Error(
        `${dir}: no model.safetensors or model.safetensors.index.json (pytorch_model.bin is not read: it is a pickle and can run code)`,
      );
    const h = readSafetensorsHeader(file);
    files.push(file);
    for (const [name, ref] of h.tensors) weights.set(name, ref);
  }
  return { dir, config, weights, files };
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
      throw new Error(`${this.where}: config.json "${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  }
  str(key: string, dflt?: string): string {
    const v = this.config[key];
    if (v === undefined || v === null) {
      if (dflt === undefined) throw new Error(`${this.where}: config.json has no "${key}"`);
      return dflt;
    }
    if (typeof v !== 'string')
      throw new Error(`${this.where}: config.json "${key}" must be a string, got ${JSON.stringify(v)}`);
    return v;
  }
  bool(key: string, dflt: boolean): boolean {
    const v = this.config[key];
    return typeof v === 'boolean' ? v : dflt;
  }
}
