// Prefix tuning as PEFT's PREFIX_TUNING adapter (peft/tuners/prefix_tuning). A plugin trained through the
// reparameterisation MLP is exported as its projected prefixes with `prefix_projection: false` — PEFT's PrefixEncoder
// then holds them as nn.Embedding(P, layers·2·token_dim), which loads both for inference and with is_trainable=True
// (with prefix_projection true, a trainable load builds the small [P, token_dim] embedding and the saved projected
// table no longer fits). For grouped-query attention token_dim and num_attention_heads are written per key/value
// head, which is what PEFT's _prepare_prompt_learning_config (peft#1901) turns them into anyway, and what older PEFT
// then uses as written. Seq2seq models are refused both ways: PEFT puts their prefix on the decoder's self- and
// cross-attention, Delta Studio on the encoder's and decoder's self-attention.
import type { HostTensor } from '../../../onnx/graph.js';
import { f32, PeftError, promptDims, promptEmbeddings, type PeftAdapter } from '../../peft.js';
import { projectPrefix } from './transform.js';

/**
 * Copies prefixes between the plugin's layout [layers, 2, kvHeads, P, dh] and PEFT's table [P, layers·2·kvHeads·dh]
 * ((layer, key|value, head, dim) order): `toPeft` says which way.
 */
function relayout(src: Float32Array, [L, two, H, P, dh]: number[], toPeft: boolean): Float32Array {
  const N = L * two * H * dh;
  const out = new Float32Array(P * N);
  for (let l = 0; l < L; l++)
    for (let s = 0; s < two; s++)
      for (let h = 0; h < H; h++)
        for (let p = 0; p < P; p++)
          for (let d = 0; d < dh; d++) {
            const ours = (((l * two + s) * H + h) * P + p) * dh + d,
              peft = p * N + ((l * two + s) * H + h) * dh + d;
            if (toPeft) out[peft] = src[ours];
            else out[ours] = src[peft];
          }
  return out;
}

/** The prefixes of a prefix plugin as PEFT's embedding table [P, layers·2·kvHeads·dh]. */
function prefixTable(tensors: Record<string, HostTensor>): HostTensor {
  const kv = tensors['prefix.key_values'];
  if (kv) {
    const [L, two, H, P, dh] = kv.shape;
    return {
      dtype: 'float32',
      shape: [P, L * two * H * dh],
      data: relayout(f32(kv).data as Float32Array, kv.shape, true),
    };
  }
  const t = projectPrefix((name) => {
    const x = tensors[name];
    return { data: f32(x).data as Float32Array, shape: x.shape };
  });
  return { dtype: 'float32', shape: t.shape, data: t.data };
}

export const prefixPeft: PeftAdapter = {
  kind: 'adapter',
  type: 'PREFIX_TUNING',
  promptLearning: true,
  keys: { own: ['prompt_embeddings'] },

  refuseExport(task, hf) {
    if (task === 'seq2seq')
      return `prefix on ${hf.model_type} (seq2seq): Delta Studio puts the prefix on the encoder's and the decoder's self-attention, PEFT's seq-to-seq prefix tuning on the decoder's self- and cross-attention only, so the adapter would compute something else; export 'onnx' instead`;
    return undefined;
  },

  export({ tensors, hf, modelDir, where }) {
    const dims = promptDims(hf, modelDir);
    const t = prefixTable(tensors);
    const tokenDim = (dims.tokenDim / dims.heads) * dims.kvHeads;
    if (t.shape[1] !== dims.layers * 2 * tokenDim) {
      throw new PeftError(
        `${where}: the prefixes have ${t.shape[1]} values per token, ${modelDir}'s config implies ${dims.layers} layers × 2 × ${tokenDim} = ${dims.layers * 2 * tokenDim}`,
        where,
      );
    }
    return {
      tensors: { prompt_embeddings: t },
      config: {
        num_virtual_tokens: t.shape[0],
        token_dim: tokenDim,
        encoder_hidden_size: tokenDim,
        num_transformer_submodules: 1,
        num_attention_heads: dims.kvHeads,
        num_layers: dims.layers,
        prefix_projection: false,
      },
    };
  },

  import({ src, task, hf, modelDir }) {
    const { emb, tokens: P } = promptEmbeddings(src, 'PREFIX_TUNING');
    if (task === 'seq2seq')
      throw new PeftError(
        `${src.configFile}: prefix tuning of a seq2seq model puts PEFT's prefix on the decoder's self- and cross-attention; Delta Studio's prefix is on the encoder's and decoder's self-attention`,
        src.configFile,
      );
    const dims = promptDims(hf, modelDir);
    const dh = dims.tokenDim / dims.heads,
      kv = dims.kvHeads,
      L = dims.layers;
    const N = L * 2 * kv * dh;
    if (emb.shape.length !== 2 || emb.shape[0] !== P || emb.shape[1] !== N) {
      throw new PeftError(
        `${src.weightsFile}: prompt_embeddings has shape [${emb.shape}], expected [${P}, ${N}] (${L} layers × key and value × ${kv} key/value heads × ${dh}): a prefix with projection saved before training ends is not importable`,
        src.weightsFile,
      );
    }
    const shape = [L, 2, kv, P, dh];
    return {
      config: { method: 'prefix', prefix_token_num: P, reparameterize: false },
      tensors: {
        'prefix.key_values': { dtype: 'float32', shape, data: relayout(emb.data as Float32Array, shape, false) },
      },
    };
  },
};
