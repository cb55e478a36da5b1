// Common structure names (OpenDelta's idea): one vocabulary for the parts of every backbone, so that a delta
// config written with `attn@.q@`, `ff@.w2@` or `attn@.layer_norm@` works on BERT, GPT-2, Llama and T5 alike.
//   <stack>.block.<i>.attn.{q,k,v,qkv,o,layer_norm}   self-attention
//   decoder.block.<i>.crossattn.{q,k,v,o,layer_norm}  T5's encoder-decoder attention
//   <stack>.block.<i>.ff.{w1,gate,w2,layer_norm}      feed-forward (w1 = up / in, gate = gated branch, w2 = down / out)
//   embeddings, lm_head

type Rule = [RegExp, string];

const BERT: Rule[] = [
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.attention$/, 'encoder.block.$1.attn'],
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.output$/, 'encoder.block.$1.ff'],
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.attention\.self\.query$/, 'encoder.block.$1.attn.q'],
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.attention\.self\.key$/, 'encoder.block.$1.attn.k'],
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.attention\.self\.value$/, 'encoder.block.$1.attn.v'],
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.attention\.output\.dense$/, 'encoder.block.$1.attn.o'],
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.attention\.output\.LayerNorm$/, 'encoder.block.$1.attn.layer_norm'],
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.intermediate\.dense$/, 'encoder.block.$1.ff.w1'],
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.output\.dense$/, 'encoder.block.$1.ff.w2'],
  [/^(?:(?:bert|roberta)\.)?encoder\.layer\.(\d+)\.output\.LayerNorm$/, 'encoder.block.$1.ff.layer_norm'],
  [/^(?:(?:bert|roberta)\.)?embeddings\.word_embeddings$/, 'embeddings'],
];

const GPT2: Rule[] = [
  [/^(?:transformer\.)?h\.(\d+)\.attn$/, 'decoder.block.$1.attn'],
  [/^(?:transformer\.)?h\.(\d+)\.mlp$/, 'decoder.block.$1.ff'],
  [/^(?:transformer\.)?h\.(\d+)\.attn\.c_attn$/, 'decoder.block.$1.attn.qkv'],
  [/^(?:transformer\.)?h\.(\d+)\.attn\.c_proj$/, 'decoder.block.$1.attn.o'],
  [/^(?:transformer\.)?h\.(\d+)\.ln_1$/, 'decoder.block.$1.attn.layer_norm'],
  [/^(?:transformer\.)?h\.(\d+)\.mlp\.c_fc$/, 'decoder.block.$1.ff.w1'],
  [/^(?:transformer\.)?h\.(\d+)\.mlp\.c_proj$/, 'decoder.block.$1.ff.w2'],
  [/^(?:transformer\.)?h\.(\d+)\.ln_2$/, 'decoder.block.$1.ff.layer_norm'],
  [/^(?:transformer\.)?wte$/, 'embeddings'],
  [/^lm_head$/, 'lm_head'],
];

const LLAMA: Rule[] = [
  [/^(?:model\.)?layers\.(\d+)\.self_attn$/, 'decoder.block.$1.attn'],
  [/^(?:model\.)?layers\.(\d+)\.mlp$/, 'decoder.block.$1.ff'],
  [/^(?:model\.)?layers\.(\d+)\.self_attn\.(q|k|v|o)_proj$/, 'decoder.block.$1.attn.$2'],
  [/^(?:model\.)?layers\.(\d+)\.input_layernorm$/, 'decoder.block.$1.attn.layer_norm'],
  [/^(?:model\.)?layers\.(\d+)\.mlp\.gate_proj$/, 'decoder.block.$1.ff.gate'],
  [/^(?:model\.)?layers\.(\d+)\.mlp\.up_proj$/, 'decoder.block.$1.ff.w1'],
  [/^(?:model\.)?layers\.(\d+)\.mlp\.down_proj$/, 'decoder.block.$1.ff.w2'],
  [/^(?:model\.)?layers\.(\d+)\.post_attention_layernorm$/, 'decoder.block.$1.ff.layer_norm'],
  [/^(?:model\.)?embed_tokens$/, 'embeddings'],
  [/^lm_head$/, 'lm_head'],
];

const T5: Rule[] = [
  [/^(encoder|decoder)\.block\.(\d+)\.layer\.0\.SelfAttention$/, '$1.block.$2.attn'],
  [/^decoder\.block\.(\d+)\.layer\.1\.EncDecAttention$/, 'decoder.block.$1.crossattn'],
  [/^(encoder\.block\.\d+\.layer\.1|decoder\.block\.\d+\.layer\.2)\.DenseReluDense$/, '$1.ff'],
  [/^(encoder|decoder)\.block\.(\d+)\.layer\.0\.SelfAttention\.(q|k|v|o)$/, '$1.block.$2.attn.$3'],
  [/^(encoder|decoder)\.block\.(\d+)\.layer\.0\.layer_norm$/, '$1.block.$2.attn.layer_norm'],
  [/^decoder\.block\.(\d+)\.layer\.1\.EncDecAttention\.(q|k|v|o)$/, 'decoder.block.$1.crossattn.$2'],
  [/^decoder\.block\.(\d+)\.layer\.1\.layer_norm$/, 'decoder.block.$1.crossattn.layer_norm'],
  [/^(encoder\.block\.\d+\.layer\.1|decoder\.block\.\d+\.layer\.2)\.DenseReluDense\.(wi|wi_1)$/, '$1.ff.w1'],
  [/^(encoder\.block\.\d+\.layer\.1|decoder\.block\.\d+\.layer\.2)\.DenseReluDense\.wi_0$/, '$1.ff.gate'],
  [/^(encoder\.block\.\d+\.layer\.1|decoder\.block\.\d+\.layer\.2)\.DenseReluDense\.wo$/, '$1.ff.w2'],
  [/^(encoder\.block\.\d+\.layer\.1|decoder\.block\.\d+\.layer\.2)\.layer_norm$/, '$1.ff.layer_norm'],
  [/^shared$/, 'embeddings'],
  [/^lm_head$/, 'lm_head'],
];

const RULES: Record<string, Rule[]> = {
  bert: BERT,
  roberta: BERT,
  gpt2: GPT2,
  llama: LLAMA,
  mistral: LLAMA,
  qwen2: LLAMA,
  t5: T5,
};

/** The common structure name of a module, or undefined when it has none. */
export function commonName(modelType: string, name: string): string | undefined {
  for (const [re, to] of RULES[modelType] ?? []) {
    if (re.test(name)) {
      const out = name.replace(re, to);
      // T5's feed-forward sub-layer index is not a block index: normalise "encoder.block.3.layer.1" to "encoder.block.3".
      return out.replace(/^(encoder|decoder)\.block\.(\d+)\.layer\.\d+\./, '$1.block.$2.');
    }
  }
  return undefined;
}
