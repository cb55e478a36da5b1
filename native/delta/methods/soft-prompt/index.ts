// Soft prompt (Lester et al. 2021; OpenDelta SoftPrompt, PEFT prompt tuning): trainable virtual tokens prepended to
// the (encoder) input embeddings, with the attention mask extended; decoders ignore them in the loss. Its life: the
// config below, the graph transform (transform.ts), and PEFT's PROMPT_TUNING adapter (peft.ts). No weight of the
// model can hold it, so it does not merge.
import { registerMethod } from '../../registry.js';
import { softPromptPeft } from './peft.js';
import { applySoftPrompt, buildSoftPrompt } from './transform.js';

registerMethod({
  name: 'soft_prompt',
  kind: 'addition',
  title: 'Soft prompt (prompt tuning)',
  keys: {
    soft_token_num: { type: 'integer', default: 100, doc: 'number of virtual tokens', peft: 'num_virtual_tokens' },
    init: {
      type: 'string',
      default: 'random',
      doc: 'random (uniform ±init_range), vocab (embeddings of random tokens) or text (embeddings of init_text)',
      trainingOnly: true,
    },
    init_range: { type: 'number', default: 0.5, doc: 'bound of the uniform initialisation', trainingOnly: true },
    init_text: {
      type: 'string',
      doc: 'text whose token embeddings start the prompt (repeated to fill it)',
      trainingOnly: true,
      peft: 'prompt_tuning_init_text',
    },
  },
  build: buildSoftPrompt,
  apply: applySoftPrompt,
  cannotMerge: 'it prepends learned virtual tokens to the input, which no weight of the model can hold',
  peft: softPromptPeft,
});
