// The shapes shared by the delta registry, its methods and its drivers (merge, PEFT): configs, parameters, and what a
// method's merge rule and PEFT mapping are. Types only, so every module of native/delta can use them without a cycle.
import type { HostTensor } from '../onnx/graph.js';
import type { ModuleRecord } from '../models/builder.js';
import type { HfConfig } from '../models/folder.js';
import type { BuiltModel, Task } from '../models/types.js';

export type DeltaKind = 'specification' | 'reparameterization' | 'addition';

export interface ConfigKey {
  type: 'number' | 'integer' | 'boolean' | 'string' | 'strings' | 'strings-or-regex';
  default?: unknown;
  doc: string;
  /** Only decides a starting value or training noise: plugins that differ in it alone share one inference graph. */
  trainingOnly?: boolean;
  /** PEFT's name for the same setting (lora_alpha for alpha), accepted as this key. */
  peft?: string;
}

/** A parameter of a plugin: its name in the plugin file and the graph value that holds it. */
export interface DeltaParam {
  name: string;
  value: string;
  method: string;
  /** Existing backbone weight made trainable (BitFit's biases, full fine-tuning), rather than a new one. */
  existing: boolean;
}

/** Where a set of deltas lives on a graph that may carry several (plugins combined on one base). */
export interface DeltaScope {
  /** New parameters become graph values `<namespace>/<name>`, so two sets may use the same method on one module. */
  namespace?: string;
  /** Who the set belongs to, for errors (e.g. 'plugin "sentiment"'); default: 'delta set "<namespace>"'. */
  owner?: string;
}

export interface DeltaConfig {
  method: string;
  [key: string]: unknown;
}

export interface AppliedDelta {
  methods: { method: string; config: Record<string, unknown>; modules: string[] }[];
  params: DeltaParam[];
  /** Graph values to train, and their initial values. */
  trainable: string[];
  initial: Record<string, HostTensor>;
  /** Module name → methods that modified it. */
  marked: Map<string, string[]>;
}

// ——— merging ———

/** A Linear/Conv1D weight: its math-sense shape [out, in], stored as [out, in], or [in, out] for Conv1D (GPT-2). */
export interface WeightLayout {
  in: number;
  out: number;
  conv: boolean;
}

/** One method's change to one Linear/Conv1D module. */
export interface WeightFold {
  /**
   * 'input': it scales what only the base product reads (an input-scaling (IA)³: a LoRA branch reads the unscaled
   * input), so it folds first; 'output': it wraps the module's output, and folds in the order applied.
   */
  stage: 'input' | 'output';
  /** Folds the change into (sign 1) or out of (−1) the module's weight, in its stored layout, in place. */
  weight(W: Float32Array, layout: WeightLayout, sign: 1 | -1): void;
  /** Folds it into or out of the module's bias [out], when the change reaches the bias. */
  bias?(b: Float32Array, sign: 1 | -1): void;
}

/** What a method's fold rule is told about one module the method changed. */
export interface FoldSite {
  model: BuiltModel;
  module: ModuleRecord;
  /** The method's config, defaults filled. */
  config: Record<string, unknown>;
  /** A delta parameter by plugin name: its trained values, and its graph value (to see where the graph reads it). */
  param(name: string): { data: Float32Array; value: string };
}

/** Where a new delta parameter goes in the plain model: added to a base weight, or nowhere (and why). */
export type Placement = { addTo: string } | { refused: string };

/**
 * How a method's trained delta becomes plain weights. Trained backbone weights (BitFit on existing biases, head-only,
 * full) need no rule, the plain model holds them as they are: an empty rule says just that.
 */
export interface MergeRule {
  /** The fold of the delta into one module it changed (LoRA, (IA)³); reversible, so it can be taken out again. */
  fold?(site: FoldSite): WeightFold;
  /** Where a new parameter goes (BitFit's new biases), for the merged export: `model` is the base it was built on. */
  place?(param: string, model: BuiltModel): Placement;
}

// ——— PEFT ———

export type Json = Record<string, unknown>;

/** An adapter folder as read: adapter_config.json and the tensors of adapter_model.safetensors. */
export interface PeftSource {
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

/** What a method's mapping is given to write its part of an adapter. */
export interface PeftExportSite {
  /** The base model built with the plugin's methods. */
  model: BuiltModel;
  /** The method's config in the plugin (defaults filled). */
  config: DeltaConfig;
  /** The method's parameters on the model. */
  params: DeltaParam[];
  /** The plugin's tensors by name, as stored (f32 widens them). */
  tensors: Record<string, HostTensor>;
  /** The base model's config.json, and its folder (for errors). */
  hf: HfConfig;
  modelDir: string;
  /** The plugin file, for errors. */
  where: string;
  /** What keys start with: "base_model.model." (tuners) or "base_model." (prompt learning). */
  prefix: string;
}

/** What a method's mapping is given to read an adapter of its peft_type. */
export interface PeftImportSite {
  src: PeftSource;
  /** The base model built for the adapter's task (no deltas). */
  model: BuiltModel;
  task: Task;
  hf: HfConfig;
  modelDir: string;
}

/** A method that is a PEFT adapter type. */
export interface PeftAdapter {
  kind: 'adapter';
  /** adapter_config.json's peft_type. */
  type: string;
  /** A prompt-learning adapter: keys under "base_model.", and no modules_to_save in its config (PEFT 0.6). */
  promptLearning: boolean;
  /**
   * How PEFT names the method's tensors in a state dict: per module, a Linear per adapter (`<module>.<layer>.<adapter>.weight`)
   * or a tensor per adapter (`<module>.<vector>.<adapter>`); or keys of their own (`prompt_embeddings`). The reader
   * takes the adapter name out, and tells them from whole weights (modules_to_save).
   */
  keys: { layers?: string[]; vectors?: string[]; own?: string[] };
  /** Why this plugin cannot be written as this adapter type at all (checked before the model is built). */
  refuseExport?(task: Task, hf: HfConfig): string | undefined;
  /** The adapter's tensors (full keys) and its adapter_config.json fields beyond the common ones. */
  export(site: PeftExportSite): { tensors: Record<string, HostTensor>; config: Json };
  /** The method's config and its tensors by plugin name, from an adapter of this type. */
  import(site: PeftImportSite): { config: DeltaConfig; tensors: Record<string, HostTensor> };
}

/**
 * A method whose trained backbone weights PEFT keeps as modules_to_save beside an adapter (head-only): `weights`
 * says which it covers, `which` the same in words for refusals.
 */
export interface PeftModulesToSave {
  kind: 'modules_to_save';
  weights: RegExp;
  which: string;
}

export type PeftMapping = PeftAdapter | PeftModulesToSave;
