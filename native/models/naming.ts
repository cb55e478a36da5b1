// Weights by the names of the class a user loads, whatever prefix convention the checkpoint file used.
//
// Every task class of a family keeps its backbone under one attribute, transformers' `base_model_prefix`
// (GPT2ForSequenceClassification.transformer, BertForSequenceClassification.bert, LlamaForCausalLM.model), so its
// state dict says `transformer.h.0.attn.c_attn.weight`; a checkpoint saved from the bare backbone (GPT2Model, as the
// Hub's gpt2 files; BertModel; LlamaModel) says `h.0.attn.c_attn.weight`. transformers bridges the two on load:
// v4's modeling_utils._load_pretrained_model (`loading_task_model_from_base_state_dict`, _get_key_renaming_mapping)
// and v5's core_model_loading.rename_source_key (the prefix is added to a key when the model has `<prefix>.<key>`).
// PEFT does not: set_peft_model_state_dict (peft/utils/save_and_load.py) loads adapter keys with
// load_state_dict(strict=False) on the wrapped class's own names, and a key without the prefix is only reported
// as "Found missing adapter keys" (peft_model.py). So Delta Studio reads a folder's weights under the class's names
// from the start: graphs, plugins, PEFT keys and merged exports all carry them.

interface Backbone {
  /** transformers' base_model_prefix of the family's task classes. */
  prefix: string;
  /** The bare backbone class's top-level modules: the names that take the prefix (task heads stay outside it). */
  roots: readonly string[];
}

const DECODER: Backbone = { prefix: 'model', roots: ['embed_tokens', 'layers', 'norm'] };

// By config.json's model_type. T5ForConditionalGeneration says base_model_prefix "transformer" but has no such
// attribute: its names (shared, encoder, decoder, lm_head) are the checkpoint's, so T5 has no entry.
const BACKBONES: Record<string, Backbone> = {
  bert: { prefix: 'bert', roots: ['embeddings', 'encoder', 'pooler'] },
  roberta: { prefix: 'roberta', roots: ['embeddings', 'encoder', 'pooler'] },
  gpt2: { prefix: 'transformer', roots: ['wte', 'wpe', 'h', 'ln_f'] },
  llama: DECODER,
  mistral: DECODER,
  qwen2: DECODER,
};

const backboneOf = (modelType: unknown): Backbone | undefined =>
  typeof modelType === 'string' && Object.hasOwn(BACKBONES, modelType) ? BACKBONES[modelType] : undefined;

/** The prefix (with its dot) the task classes of `modelType` keep their backbone under; '' when they have none. */
export function backbonePrefix(modelType: unknown): string {
  const b = backboneOf(modelType);
  return b ? `${b.prefix}.` : '';
}

/**
 * The name the task class gives a weight, module or plugin parameter saved under `name`: the backbone's prefix added
 * where the name starts at one of the bare backbone's modules; anything else (already prefixed, a task head, a
 * delta's own parameter such as prefix.key_values) is returned as it is.
 */
export function classNameOf(modelType: unknown, name: string): string {
  const b = backboneOf(modelType);
  if (!b) return name;
  const dot = name.indexOf('.');
  const first = dot < 0 ? name : name.slice(0, dot);
  return b.roots.includes(first) ? `${b.prefix}.${name}` : name;
}
