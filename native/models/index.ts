// The architectures Delta Studio reads, chosen by config.json's model_type.
import { BERT } from './bert.js';
import { ConfigReader, readModelFolder, type ModelFolder } from './folder.js';
import { GPT2 } from './gpt2.js';
import { LLAMA } from './llama.js';
import { T5 } from './t5.js';
import { headOf, type Architecture, type BuiltModel, type ModelOptions } from './types.js';

export const ARCHITECTURES: Architecture[] = [BERT, GPT2, LLAMA, T5];
export const SUPPORTED_MODEL_TYPES = ARCHITECTURES.flatMap((a) => a.modelTypes);

export function architectureOf(folder: ModelFolder): Architecture {
  const type = folder.config.model_type;
  if (typeof type !== 'string')
    throw new Error(`${folder.dir}: config.json has no model_type (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  const arch = ARCHITECTURES.find((a) => a.modelTypes.includes(type));
  if (!arch)
    throw new Error(
      `${folder.dir}: model_type "${type}" is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`,
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
  return arch.build(folder, new ConfigReader(folder.config, folder.dir), { ...opts, task });
}

export type { BuiltModel, ModelOptions, Task } from './types.js';
