// What an architecture module builds from a model folder.
import type { Graph, HostTensor } from '../onnx/graph.js';
import type { BuildDeltas, ModelBuilder, ModuleRecord } from './builder.js';

export type { BuildDeltas } from './builder.js';
import type { ConfigReader, ModelFolder } from './folder.js';

export type Task = 'classification' | 'regression' | 'causal-lm' | 'seq2seq';
export const TASK_HEADS: readonly Task[] = ['classification', 'regression', 'causal-lm', 'seq2seq'];

/** A task as written by an older Delta Studio (plugins and run folders before the one task vocabulary). */
export function headOf(task: string): Task | undefined {
  if (task === 'seq2seq-lm') return 'seq2seq';
  return (TASK_HEADS as readonly string[]).includes(task) ? (task as Task) : undefined;
}

export interface ModelOptions {
  task?: Task;
  /** Classes of a classification head (default: config num_labels / id2label, else 2). */
  numLabels?: number;
  /** Weights to use instead of the folder's, by Hugging Face name (float32; e.g. with a delta merged in). */
  weights?: Record<string, HostTensor>;
  /** Deltas that change how the graph is built rather than a module's output (see native/delta). */
  build?: BuildDeltas;
  /**
   * 'float16': mixed precision — frozen matrices are kept in float16 and multiplied in float16 (what a GPU is fast
   * at); activations, norms, the loss, deltas and optimizer state stay float32. Default 'float32'.
   */
  precision?: 'float32' | 'float16';
  /**
   * 'fused': a decoder's causal self-attention is one onnxruntime MultiHeadAttention node (flash attention on CUDA in
   * float16: no S² scores kept or even made in the forward pass). It reads no attention mask, so it is exact for the
   * real tokens of right-padded rows only — what training's batches are (the collator checks). Llama-family and
   * GPT-2 models without prefix tuning; others keep the explicit form. Default 'explicit': scores, mask and softmax.
   */
  attention?: 'fused' | 'explicit';
}

export interface BuiltModel {
  /** transformers class this graph is equivalent to, e.g. BertForSequenceClassification. */
  architecture: string;
  modelType: string;
  task: Task;
  graph: Graph;
  /** Graph inputs in the order a batch provides them. */
  inputs: string[];
  logits: string;
  /** Scalar loss (needs the `labels` input). */
  loss: string;
  modules: ModuleRecord[];
  /** Head weights the folder did not have, initialised as transformers would. */
  created: Record<string, HostTensor>;
  builder: ModelBuilder;
  numLabels?: number;
  /** Sizes for estimates: hidden width, transformer blocks (all stacks), heads, vocabulary. */
  dims: { hidden: number; layers: number; heads: number; vocab: number };
  /** Its self-attention is fused (see ModelOptions.attention): batches must be right-padded. */
  fusedAttention?: boolean;
}

export interface Architecture {
  modelTypes: string[];
  defaultTask: Task;
  tasks: Task[];
  /** The config.json keys that say how many layers are built (num_hidden_layers, n_layer, …), for errors. */
  layerKeys: string[];
  build(folder: ModelFolder, cfg: ConfigReader, opts: Required<Pick<ModelOptions, 'task'>> & ModelOptions): BuiltModel;
}
