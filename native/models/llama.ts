// Llama-family decoders (llama, mistral, qwen2): RMSNorm, rotary embeddings (rotate_half layout), SwiGLU,
// grouped-query attention, tied or untied head — as transformers' modeling_llama / modeling_qwen2.
import { ModelBuilder } from './builder.js';
import type { ConfigReader, ModelFolder } from './folder.js';
import type { Architecture, BuiltModel, ModelOptions, Task } from './types.js';
import type { Value } from '../onnx/graph.js';
import { decoderClassifier } from './gpt2.js';

const NAMES: Record<string, [string, string]> = {
  llama: ['LlamaForCausalLM', 'LlamaForSequenceClassification'],
  mistral: ['MistralForCausalLM', 'MistralForSequenceClassification'],
  qwen2: ['Qwen2ForCausalLM', 'Qwen2ForSequenceClassification'],
};

export function buildLlama(folder: ModelFolder, cfg: ConfigReader, opts: { task: Task } & ModelOptions): BuiltModel {
  const type = cfg.str('model_type');
  const b = new ModelBuilder(folder, 42, opts.weights, opts.build, opts.precision);
  const g = b.g;
  const D = cfg.num('hidden_size'),
    H = cfg.num('num_attention_heads'),
    L = cfg.num('num_hidden_layers');
  const KV = cfg.num('num_key_value_heads', H),
    F = cfg.num('intermediate_size'),
    V = cfg.num('vocab_size');
  const eps = cfg.num('rms_norm_eps', 1e-6),
    theta = cfg.num('rope_theta', 10000);
  const dh = cfg.num('head_dim', D / H);
  const act = cfg.str('hidden_act', 'silu');
  if (act !== 'silu') throw new Error(`${folder.dir}: hidden_act "${act}" is not supported (silu)`);
  if (cfg.config.rope_scaling)
    throw new Error(`${folder.dir}: rope_scaling is not supported yet (plain rotary embeddings only)`);
  if (H % KV !== 0)
    throw new Error(`${folder.dir}: num_attention_heads ${H} is not a multiple of num_key_value_heads ${KV}`);
  const qkvBias = type === 'qwen2' || cfg.bool('attention_bias', false);
  const pre = folder.weights.has('model.embed_tokens.weight') ? 'model.' : '';

  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask0 = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const prompted = b.prependPrompt(b.embedding(`${pre}embed_tokens`, ids, V, D), mask0, D);
  const mask = prompted.mask;
  let x = prompted.emb;
  // Rotary: inv_freq = θ^(−2i/dh); angle = position · inv_freq; both halves share it (rotate_half layout).
  const intPos = b.prefixTokens
    ? g.op1('Add', [b.positionsFromMask(mask), g.constant(b.prefixTokens, 'int64', [])])
    : b.positionsFromMask(mask);
  const invFreq = g.constant(
    Array.from({ length: dh / 2 }, (_, i) => 1 / theta ** ((2 * i) / dh)),
    'float32',
    [dh / 2],
  );
  const fused = opts.attention === 'fused' && !b.build.prefix;
  let rope: (t: Value) => Value;
  if (fused) {
    // onnxruntime's rotary kernel on [B,S,heads·dh], reading cos/sin tables [S, dh/2] by each token's position.
    const angles = g.op1('Mul', [
      g.op1('Unsqueeze', [g.op1('Cast', [b.arange(intPos)], { to: 1 }), b.i64([1])]),
      invFreq,
    ]);
    const [cosT, sinT] = [g.op1('Cos', [angles]), g.op1('Sin', [angles])];
    rope = (t) => g.op1('RotaryEmbedding', [t, intPos, cosT, sinT], { interleaved: 0 });
  } else {
    const pos = g.op1('Cast', [intPos], { to: 1 });
    const ang = g.op1('Mul', [g.op1('Unsqueeze', [pos, b.i64([2])]), invFreq]);
    const emb = g.op1('Unsqueeze', [g.op1('Concat', [ang, ang], { axis: -1 }), b.i64([1])]); // [B,1,S,dh]
    const cos = g.op1('Cos', [emb]),
      sin = g.op1('Sin', [emb]);
    rope = (t) => {
      const [a, c] = g.op('Split', [t, b.i64([dh / 2, dh / 2])], { axis: -1 }, { outputs: 2 });
      const rot = g.op1('Concat', [g.op1('Neg', [c]), a], { axis: -1 });
      return g.op1('Add', [g.op1('Mul', [t, cos]), g.op1('Mul', [rot, sin])]);
    };
  }
  // Grouped-query attention: each key/value head serves H/KV query heads.
  const repeatKv = (t: Value): Value => {
    if (KV === H) return t;
    const e = g.op1('Expand', [g.op1('Unsqueeze', [t, b.i64([2])]), b.i64([1, 1, H / KV, 1, 1])]);
    return g.op1('Reshape', [e, b.i64([0, H, -1, dh])]);
  };
  b.initPrefix(L, KV, dh, D);
  const bias = fused ? undefined : b.prefixBias(b.attentionBias(mask, true));
  for (let l = 0; l < L; l++) {
    const p = `${pre}layers.${l}`;
    x = g.scope(p, () => {
      const hN = b.rmsNorm(`${p}.input_layernorm`, x, D, eps);
      const proj = (name: string, heads: number): Value =>
        b.linear(`${p}.self_attn.${name}`, hN, D, heads * dh, qkvBias);
      let ctx: Value;
      if (fused) {
        // [B,S,heads·dh] throughout: no head transposes.
        const [q, k, v] = [rope(proj('q_proj', H)), rope(proj('k_proj', KV)), proj('v_proj', KV)];
        ctx = b.causalSelfAttention(q, k, v, H, KV, dh, 1 / Math.sqrt(dh));
      } else {
        const heads = (name: string, n: number): Value => b.splitHeads(proj(name, n), n, dh);
        const q = rope(heads('q_proj', H));
        // A prefix joins the keys after their rotation and before the key/value heads are shared out.
        const kv = b.withPrefix(rope(heads('k_proj', KV)), heads('v_proj', KV), hN);
        ctx = b.mergeHeads(b.attend(q, repeatKv(kv.k), repeatKv(kv.v), bias, 1 / Math.sqrt(dh)), H * dh);
      }
      const attn = b.linear(`${p}.self_attn.o_proj`, ctx, H * dh, D, false);
      b.record({
        name: `${p}.self_attn`,
        type: 'Attention',
        params: [],
        input: hN.name,
        output: attn.name,
        in: D,
        out: D,
      });
      const a = g.op1('Add', [x, attn]);
      const m = b.rmsNorm(`${p}.post_attention_layernorm`, a, D, eps);
      const gate = g.op1('QuickGelu', [b.linear(`${p}.mlp.gate_proj`, m, D, F, false)], { alpha: 1.0 }); // SiLU
      const up = b.linear(`${p}.mlp.up_proj`, m, D, F, false);
      const ff = b.linear(`${p}.mlp.down_proj`, g.op1('Mul', [gate, up]), F, D, false);
      b.record({ name: `${p}.mlp`, type: 'FeedForward', params: [], input: m.name, output: ff.name, in: D, out: D });
      return g.op1('Add', [a, ff]);
    });
  }
  x = b.rmsNorm(`${pre}norm`, x, D, eps);
  const [lmName, clsName] = NAMES[type];
  if (opts.task === 'causal-lm') {
    const tied = !folder.weights.has('lm_head.weight');
    if (tied && !cfg.bool('tie_word_embeddings', false))
      throw new Error(`${folder.dir}: tensor "lm_head.weight" is missing and tie_word_embeddings is false`);
    const head = tied ? b.matrix(`${pre}embed_tokens.weight`, [V, D]) : b.matrix('lm_head.weight', [V, D]);
    const full = b.product(x, head, true);
    b.record({
      name: 'lm_head',
      type: 'Linear',
      params: tied
        ? []
        : [{ name: 'lm_head.weight', shape: [V, D], dtype: folder.weights.get('lm_head.weight')!.dtype }],
      input: x.name,
      output: full.name,
      in: D,
      out: V,
    });
    g.output(b.realPositions(full), 'logits');
    const loss = b.causalLmLoss(full, b.promptLabels(g.input('labels', 'int64', ['batch', 'seq'])), V);
    g.output(loss);
    return {
      architecture: lmName,
      modelType: type,
      task: opts.task,
      graph: g,
      inputs: ['input_ids', 'attention_mask', 'labels'],
      logits: 'logits',
      loss: loss.name,
      modules: b.modules,
      created: b.created,
      builder: b,
      dims: { hidden: D, layers: L, heads: H, vocab: V },
      fusedAttention: fused,
    };
  }
  return {
    ...decoderClassifier(b, x, mask, D, cfg, opts, clsName, type, { hidden: D, layers: L, heads: H, vocab: V }),
    fusedAttention: fused,
  };
}

export const LLAMA: Architecture = {
  modelTypes: ['llama', 'mistral', 'qwen2'],
  defaultTask: 'causal-lm',
  tasks: ['causal-lm', 'classification', 'regression'],
  layerKeys: ['num_hidden_layers'],
  build: buildLlama,
};
