// Llama-shaped model folders of random bf16 weights in the Hugging Face format (config.json + sharded safetensors with
// their index), for `npm run bench:gpu`: both Delta Studio and transformers read the same folder.
import { closeSync, ftruncateSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors, type TensorData } from '../native/onnx/safetensors.js';

export interface LlamaShape {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  vocab: number;
}

/**
 * The two sizes the issue measures. 316M: hidden 1024, 24 layers, grouped-query attention (16 heads, 4 key/value
 * heads), intermediate 2560, vocabulary 32000, untied head: 317.2M parameters, the nearest Llama-shaped model (an
 * intermediate size that is a multiple of 64) to 316M. 1.03B: TinyLlama's layout (hidden 2048, 22 layers, 32 heads,
 * 4 key/value heads) with intermediate 5120: 1,030.8M.
 */
export const SHAPES: Record<string, LlamaShape> = {
  '316m': { hidden: 1024, layers: 24, heads: 16, kvHeads: 4, intermediate: 2560, vocab: 32000 },
  '1b': { hidden: 2048, layers: 22, heads: 32, kvHeads: 4, intermediate: 5120, vocab: 32000 },
  // For --smoke on the CPU.
  tiny: { hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 128, vocab: 512 },
};

export function tensorShapes(s: LlamaShape): Record<string, number[]> {
  const head = s.hidden / s.heads;
  const shapes: Record<string, number[]> = {
    'model.embed_tokens.weight': [s.vocab, s.hidden],
    'model.norm.weight': [s.hidden],
    'lm_head.weight': [s.vocab, s.hidden],
  };
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    Object.assign(shapes, {
      [`${p}.self_attn.q_proj.weight`]: [s.hidden, s.hidden],
      [`${p}.self_attn.k_proj.weight`]: [s.kvHeads * head, s.hidden],
      [`${p}.self_attn.v_proj.weight`]: [s.kvHeads * head, s.hidden],
      [`${p}.self_attn.o_proj.weight`]: [s.hidden, s.hidden],
      [`${p}.mlp.gate_proj.weight`]: [s.intermediate, s.hidden],
      [`${p}.mlp.up_proj.weight`]: [s.intermediate, s.hidden],
      [`${p}.mlp.down_proj.weight`]: [s.hidden, s.intermediate],
      [`${p}.input_layernorm.weight`]: [s.hidden],
      [`${p}.post_attention_layernorm.weight`]: [s.hidden],
    });
  }
  return shapes;
}

export const paramCount = (s: LlamaShape): number =>
  Object.values(tensorShapes(s)).reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0);

/** bf16 bit patterns of magnitude in [2^-7, 2^-5) with random sign and mantissa (std ≈ 0.02), from xorshift32. */
function randomBf16(n: number, seed: number): Uint16Array {
  const out = new Uint16Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    // sign (1 bit) | exponent 120 or 121 (2^-7, 2^-6) | 7 mantissa bits
    out[i] = ((x >>> 31) << 15) | ((120 + ((x >>> 7) & 1)) << 7) | (x & 0x7f);
  }
  return out;
}

/**
 * A safetensors file of bf16 zeros that takes no disk space (a sparse file): for building graphs of large models, e.g.
 * `npm run bench:memory`, which never reads the weights.
 */
function writeZeroBf16(file: string, shapes: Record<string, number[]>): void {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const name of Object.keys(shapes).sort()) {
    const n = shapes[name].reduce((a, b) => a * b, 2);
    header[name] = { dtype: 'BF16', shape: shapes[name], data_offsets: [off, off + n] };
    off += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, json);
    ftruncateSync(fd, 8 + Buffer.byteLength(json) + off);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the folder (about 2 bytes per parameter), a shard per few layers so no shard is held whole with the rest.
 * `zeros`: every weight zero, in sparse files that take no disk space (for graphs that are built, not trained).
 */
export function writeLlamaFolder(
  dir: string,
  s: LlamaShape,
  layersPerShard = 4,
  opts: { zeros?: boolean } = {},
): { params: number } {
  mkdirSync(dir, { recursive: true });
  const shapes = tensorShapes(s);
  const groups: string[][] = [];
  const names = Object.keys(shapes);
  const layerOf = (n: string): number => Number(/^model\.layers\.(\d+)\./.exec(n)?.[1] ?? -1);
  for (let l = 0; l < s.layers; l += layersPerShard)
    groups.push(names.filter((n) => layerOf(n) >= l && layerOf(n) < l + layersPerShard));
  groups.push(names.filter((n) => layerOf(n) < 0));
  const weightMap: Record<string, string> = {};
  let seed = 1;
  groups.forEach((group, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(groups.length).padStart(5, '0')}.safetensors`;
    for (const name of group) weightMap[name] = file;
    if (opts.zeros) {
      writeZeroBf16(join(dir, file), Object.fromEntries(group.map((n) => [n, shapes[n]])));
      return;
    }
    const tensors: Record<string, TensorData> = {};
    for (const name of group) {
      const shape = shapes[name];
      const n = shape.reduce((a, b) => a * b, 1);
      // Norm scales are ones (bf16 1.0 = 0x3f80), as a freshly initialised Llama has them.
      const data = name.endsWith('norm.weight') ? new Uint16Array(n).fill(0x3f80) : randomBf16(n, seed++ * 2654435761);
      tensors[name] = { dtype: 'bfloat16', shape, data };
    }
    writeSafetensors(join(dir, file), tensors, { format: 'pt' });
  });
  const params = paramCount(s);
  writeFileSync(
    join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: params * 2 }, weight_map: weightMap }, null, 2),
  );
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify(
      {
        architectures: ['LlamaForCausalLM'],
        model_type: 'llama',
        hidden_size: s.hidden,
        num_hidden_layers: s.layers,
        num_attention_heads: s.heads,
        num_key_value_heads: s.kvHeads,
        head_dim: s.hidden / s.heads,
        intermediate_size: s.intermediate,
        vocab_size: s.vocab,
        hidden_act: 'silu',
        max_position_embeddings: 4096,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: null,
        attention_bias: false,
        attention_dropout: 0.0,
        mlp_bias: false,
        tie_word_embeddings: false,
        initializer_range: 0.02,
        bos_token_id: 1,
        eos_token_id: 2,
        torch_dtype: 'bfloat16',
        use_cache: false,
      },
      null,
      2,
    ),
  );
  return { params };
}
