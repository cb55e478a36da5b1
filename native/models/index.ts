// The architectures Delta Studio reads, chosen by config.json's model_type.
import { BERT } from './bert.js';
import { ConfigReader, readModelFolder, type ModelFolder } from './folder.js';
import { GPT2 } from './gpt2.js';
import { LLAMA } from './llama.js';
import { T5 } from './t5.js';
import { headOf, type Architecture, type BuiltModel, type ModelOptions } from './types.js';
import { describeName, describeValue } from '../onnx/safetensors.js';

export const ARCHITECTURES: Architecture[] = [BERT, GPT2, LLAMA, T5];
export const SUPPORTED_MODEL_TYPES = ARCHITECTURES.flatMap((a) => a.modelTypes);

export function architectureOf(folder: ModelFolder): Architecture {
  const type = folder.config.model_type;
  if (typeof type !== 'string')
    throw new Error(`${folder.dir}: config.json has no model_type (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  const arch = ARCHITECTURES.find((a) => a.modelTypes.includes(type));
  if (!arch)
    throw new Error(
      `${folder.dir}: model_type ${describeName(type)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`,
    );
  return arch;
}

/** Reads a Hugging Face model folder and builds its graph for a task (default: the family's natural one). */
export function loadModel(dirOrFolder: string | ModelFolder, opts: ModelOptions = {}): BuiltModel {
  const folder = typeof dirOrFolder === 'string' ? readModelFolder(dirOrFolder) : dirOrFolder;
  const arch = architectureOf(folder);
  // An older run folder may say seq2seq-lm.
  const task = (opts.task && headOf(opts.task)) ?? opts.task ?? arch.defaultTask;
  if (!arch.tasks.includes(task))
    throw new Error(
      `${folder.dir}: ${folder.config.model_type} models support the tasks ${arch.tasks.join(', ')} (asked: ${task})`,
    );
  const built = arch.build(folder, new ConfigReader(folder.config, folder.dir), { ...opts, task });
  refuseUnbuiltLayers(folder, built, arch);
  return built;
}

/**
 * A checkpoint with more layers than config.json builds would run with the surplus silently ignored (a config edited
 * or taken from a smaller sibling): refused, naming some of those weights and how many. A layer is a numbered entry of
 * a stack the graph uses (bert.encoder.layer.N, transformer.h.N, model.layers.N, encoder.block.N, …) past the last
 * one it uses; other unused weights (a pretraining head, buffers) are not layers and stay allowed.
 */
function refuseUnbuiltLayers(folder: ModelFolder, built: BuiltModel, arch: Architecture): void {
  const numbered = (name: string): [string, number][] =>
    [...name.matchAll(/\.(\d+)\./g)].map((m) => [name.slice(0, m.index + 1), Number(m[1])]);
  const used = built.builder.weightValues;
  const last = new Map<string, number>();
  for (const name of used.keys())
    for (const [stack, i] of numbered(name)) last.set(stack, Math.max(i, last.get(stack) ?? -1));
  const unbuilt = [...folder.weights.keys()].filter(
    (name) => !used.has(name) && numbered(name).some(([stack, i]) => i > (last.get(stack) ?? Infinity)),
  );
  if (unbuilt.length === 0) return;
  const said = arch.layerKeys
    .filter((k) => folder.config[k] !== undefined)
    .map((k) => `${k} ${describeValue(folder.config[k])}`)
    .join(', ');
  throw new Error(
    `${folder.dir}: config.json builds fewer layers (${said || arch.layerKeys.join(', ')}) than the checkpoint holds: ${unbuilt.length} weight(s) would go unused (${unbuilt.slice(0, 3).join(', ')}${unbuilt.length > 3 ? ', …' : ''}); correct config.json, or use the checkpoint it belongs to`,
  );
}

export type { BuiltModel, ModelOptions, Task } from './types.js';
