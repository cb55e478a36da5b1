// The soft prompt as PEFT's PROMPT_TUNING adapter (peft/tuners/prompt_tuning): the prompt is the one tensor,
// "prompt_embeddings" [P, hidden]; PeftModel keeps the transformers model as base_model, so a head saved alongside is
// base_model.<module>. num_transformer_submodules is 1 also for seq2seq: Delta Studio's prompt goes in front of the
// encoder only (PEFT's 2 adds decoder prompts), so only such prompts are imported.
import { f32, PeftError, promptDims, promptEmbeddings, type PeftAdapter } from '../../peft.js';

export const softPromptPeft: PeftAdapter = {
  kind: 'adapter',
  type: 'PROMPT_TUNING',
  promptLearning: true,
  keys: { own: ['prompt_embeddings'] },

  export({ tensors, hf, modelDir }) {
    const dims = promptDims(hf, modelDir);
    const t = f32(tensors['soft_prompt.embedding']);
    return {
      tensors: { prompt_embeddings: t },
      config: {
        num_virtual_tokens: t.shape[0],
        token_dim: t.shape[1],
        num_transformer_submodules: 1,
        num_attention_heads: dims.heads,
        num_layers: dims.layers,
        prompt_tuning_init: 'RANDOM',
        prompt_tuning_init_text: null,
        tokenizer_name_or_path: null,
      },
    };
  },

  import({ src, task }) {
    const { emb, tokens: P } = promptEmbeddings(src, 'PROMPT_TUNING');
    const submodules =
      typeof src.cfg.num_transformer_submodules === 'number'
        ? src.cfg.num_transformer_submodules
        : task === 'seq2seq'
          ? 2
          : 1;
    if (submodules !== 1 || emb.shape[0] !== P) {
      throw new PeftError(
        `${src.weightsFile}: prompt_embeddings has ${emb.shape[0]} rows for ${P} virtual tokens (num_transformer_submodules ${submodules}); Delta Studio's soft prompt goes in front of the (encoder) input only, so it imports prompts with num_transformer_submodules 1`,
        src.weightsFile,
      );
    }
    return { config: { method: 'soft_prompt', soft_token_num: P }, tensors: { 'soft_prompt.embedding': emb } };
  },
};
