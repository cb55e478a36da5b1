// The embedded default backbone's shape, tokenizer and random initialisation (scripts/make-demo.ts pretrains it;
// the demo also builds an untrained copy to show what pretraining buys).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LEXICON } from './corpus.js';
import { writeFileAtomic } from '../files/atomic.js';
import { writeSafetensors } from '../onnx/safetensors.js';
import { Rng } from '../rng.js';

const SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]'];
const vocab: Record<string, number> = {};
[...SPECIAL, ...LEXICON].forEach((w, i) => {
  vocab[w] = i;
});
export const V = Math.ceil(Object.keys(vocab).length / 8) * 8;
const D = 128,
  L = 4,
  H = 4,
  KV = 2,
  F = 256;

const json = (o: unknown): Uint8Array => new TextEncoder().encode(`${JSON.stringify(o, null, 2)}\n`);
export function writeFolder(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(
    join(dir, 'config.json'),
    json({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: D,
      intermediate_size: F,
      num_hidden_layers: L,
      num_attention_heads: H,
      num_key_value_heads: KV,
      max_position_embeddings: 128,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      hidden_act: 'silu',
      tie_word_embeddings: true,
      vocab_size: V,
      pad_token_id: 0,
      bos_token_id: 2,
      eos_token_id: 3,
      initializer_range: 0.02,
      torch_dtype: 'float32',
    }),
  );
  // A word-level WordPiece tokenizer over the lexicon; every sequence ends with [SEP], which a classifier reads.
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  writeFileAtomic(
    join(dir, 'tokenizer.json'),
    json({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: SPECIAL.map((s, i) => special(i, s)),
      normalizer: {
        type: 'BertNormalizer',
        clean_text: true,
        handle_chinese_chars: true,
        strip_accents: null,
        lowercase: true,
      },
      pre_tokenizer: { type: 'BertPreTokenizer' },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
        pair: [
          { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: '[SEP]', type_id: 0 } },
          { Sequence: { id: 'B', type_id: 1 } },
          { SpecialToken: { id: '[SEP]', type_id: 1 } },
        ],
        special_tokens: { '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } },
      },
      decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
      model: {
        type: 'WordPiece',
        unk_token: '[UNK]',
        continuing_subword_prefix: '##',
        max_input_chars_per_word: 100,
        vocab,
      },
    }),
  );
  writeFileAtomic(
    join(dir, 'tokenizer_config.json'),
    json({
      tokenizer_class: 'PreTrainedTokenizerFast',
      pad_token: '[PAD]',
      unk_token: '[UNK]',
      eos_token: '[SEP]',
      model_max_length: 128,
      padding_side: 'right',
    }),
  );
  writeFileAtomic(
    join(dir, 'special_tokens_map.json'),
    json({ pad_token: '[PAD]', unk_token: '[UNK]', eos_token: '[SEP]' }),
  );
}

/** Random weights as transformers initialises a Llama (normal 0.02, norms 1): the untrained backbone. */
export function randomWeights(dir: string, seed: number): void {
  const rng = new Rng(seed);
  const t: Record<string, { dtype: 'float32'; shape: number[]; data: Float32Array }> = {};
  const normal = (shape: number[]) => ({
    dtype: 'float32' as const,
    shape,
    data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 0.02 * rng.normal()),
  });
  const ones = (n: number) => ({ dtype: 'float32' as const, shape: [n], data: new Float32Array(n).fill(1) });
  t['model.embed_tokens.weight'] = normal([V, D]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    t[`${p}.self_attn.q_proj.weight`] = normal([D, D]);
    t[`${p}.self_attn.k_proj.weight`] = normal([KV * (D / H), D]);
    t[`${p}.self_attn.v_proj.weight`] = normal([KV * (D / H), D]);
    t[`${p}.self_attn.o_proj.weight`] = normal([D, D]);
    t[`${p}.mlp.gate_proj.weight`] = normal([F, D]);
    t[`${p}.mlp.up_proj.weight`] = normal([F, D]);
    t[`${p}.mlp.down_proj.weight`] = normal([D, F]);
    t[`${p}.input_layernorm.weight`] = ones(D);
    t[`${p}.post_attention_layernorm.weight`] = ones(D);
  }
  t['model.norm.weight'] = ones(D);
  writeSafetensors(join(dir, 'model.safetensors'), t);
}
