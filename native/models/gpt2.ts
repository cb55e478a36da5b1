// GPT-2 (pre-LN, Conv1D weights [in, out], tanh GELU, learned positions, head tied to the token embedding),
// as transformers' modeling_gpt2.
import { ModelBuilder } from './builder.js';
import type { ConfigReader, ModelFolder } from './folder.js';
import type { Architecture, BuiltModel, ModelOptions, Task } from './types.js';
import type { Value } from '../onnx/graph.js';
import { headLoss, numLabelsOf } from './bert.js';

export function buildGpt2(folder: ModelFolder, cfg: ConfigReader, opts: { task: Task } & ModelOptions): BuiltModel {
  const b = new ModelBuilder(folder, 42, opts.weights, opts.build, opts.precision);
  const g = b.g;
  const D = cfg.num('n_embd'),
    H = cfg.num('n_head'),
    L = cfg.num('n_layer'),
    V = cfg.num('vocab_size'),
    P = cfg.num('n_positions');
  const F = cfg.num('n_inner', 4 * D),
    eps = cfg.num('layer_norm_epsilon', 1e-5);
  const act = cfg.str('activation_function', 'gelu_new');
  if (!['gelu_new', 'gelu_pytorch_tanh', 'gelu'].includes(act))
    throw new Error(`${folder.dir}: activation_function "${act}" is not supported (gelu_new, gelu)`);
  const dh = D / H;
  const pre = folder.weights.has('transformer.wte.weight') ? 'transformer.' : '';
  b.checkPositions(P, 'GPT-2');
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask0 = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const { emb, mask } = b.prependPrompt(b.embedding(`${pre}wte`, ids, V, D), mask0, D);
  // Positions over real tokens only, as generate() passes them, so left padding does not shift them.
  const pos = b.prefixTokens
    ? g.op1('Add', [b.positionsFromMask(mask), g.constant(b.prefixTokens, 'int64', [])])
    : b.positionsFromMask(mask);
  let x = g.op1('Add', [emb, b.embedding(`${pre}wpe`, pos, P, D)]);
  b.initPrefix(L, H, dh, D);
  const fused = opts.attention === 'fused' && !b.build.prefix;
  const bias = fused ? undefined : b.prefixBias(b.attentionBias(mask, true));
  for (let l = 0; l < L; l++) {
    const p = `${pre}h.${l}`;
    x = g.scope(p, () => {
      const n1 = b.layerNorm(`${p}.ln_1`, x, D, eps);
      const qkv = b.conv1d(`${p}.attn.c_attn`, n1, D, 3 * D);
      const [q3, k3, v3] = g.op('Split', [qkv, b.i64([D, D, D])], { axis: -1 }, { outputs: 3 });
      let ctx: Value;
      if (fused) ctx = b.causalSelfAttention(q3, k3, v3, H, H, dh, 1 / Math.sqrt(dh));
      else {
        const [q, k0, v0] = [q3, k3, v3].map((t) => b.splitHeads(t, H, dh));
        const { k, v } = b.withPrefix(k0, v0, x);
        ctx = b.mergeHeads(b.attend(q, k, v, bias, 1 / Math.sqrt(dh)), D);
      }
      const attn = b.conv1d(`${p}.attn.c_proj`, ctx, D, D);
      b.record({ name: `${p}.attn`, type: 'Attention', params: [], input: n1.name, output: attn.name, in: D, out: D });
      const a = g.op1('Add', [x, attn]);
      const n2 = b.layerNorm(`${p}.ln_2`, a, D, eps);
      const h = b.conv1d(`${p}.mlp.c_fc`, n2, D, F);
      const act2 = act === 'gelu' ? g.op1('Gelu', [h]) : g.op1('Gelu', [h], { approximate: 'tanh' });
      const ff = b.conv1d(`${p}.mlp.c_proj`, act2, F, D);
      b.record({ name: `${p}.mlp`, type: 'FeedForward', params: [], input: n2.name, output: ff.name, in: D, out: D });
      return g.op1('Add', [a, ff]);
    });
  }
  x = b.layerNorm(`${pre}ln_f`, x, D, eps);
  if (opts.task === 'causal-lm') {
    const head = folder.weights.has('lm_head.weight')
      ? b.matrix('lm_head.weight', [V, D])
      : b.matrix(`${pre}wte.weight`, [V, D]);
    const full = b.product(x, head, true);
    b.record({
      name: 'lm_head',
      type: 'Linear',
      params: folder.weights.has('lm_head.weight') ? [{ name: 'lm_head.weight', shape: [V, D], dtype: 'float32' }] : [],
      input: x.name,
      output: full.name,
      in: D,
      out: V,
    });
    g.output(b.realPositions(full), 'logits');
    const labels = g.input('labels', 'int64', ['batch', 'seq']);
    const loss = b.causalLmLoss(full, b.promptLabels(labels), V);
    g.output(loss);
    return {
      architecture: 'GPT2LMHeadModel',
      modelType: 'gpt2',
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
    ...decoderClassifier(b, x, mask, D, cfg, opts, 'GPT2ForSequenceClassification', 'gpt2', {
      hidden: D,
      layers: L,
      heads: H,
      vocab: V,
    }),
    fusedAttention: fused,
  };
}

/** transformers' *ForSequenceClassification on decoders: a bias-free `score` layer on the last real token. */
export function decoderClassifier(
  b: ModelBuilder,
  x: ReturnType<ModelBuilder['lastToken']>,
  mask: ReturnType<ModelBuilder['lastToken']>,
  D: number,
  cfg: ConfigReader,
  opts: { task: Task } & ModelOptions,
  architecture: string,
  modelType: string,
  dims: BuiltModel['dims'],
): BuiltModel {
  const n = opts.task === 'regression' ? 1 : (opts.numLabels ?? numLabelsOf(cfg));
  const logits = b.g.op1(
    'Identity',
    [b.linear('score', b.lastToken(x, mask), D, n, false, { create: { normal: cfg.num('initializer_range', 0.02) } })],
    {},
    { names: ['logits'] },
  );
  b.g.output(logits);
  const loss = headLoss(b, logits, opts.task);
  b.g.output(loss);
  return {
    architecture,
    modelType,
    task: opts.task,
    graph: b.g,
    inputs: ['input_ids', 'attention_mask', 'labels'],
    logits: 'logits',
    loss: loss.name,
    modules: b.modules,
    created: b.created,
    builder: b,
    numLabels: n,
    dims,
  };
}

export const GPT2: Architecture = {
  modelTypes: ['gpt2'],
  defaultTask: 'causal-lm',
  tasks: ['causal-lm', 'classification', 'regression'],
  layerKeys: ['n_layer'],
  build: buildGpt2,
};
