// BERT and RoBERTa encoders (post-LN, absolute positions, exact GELU), as transformers' modeling_bert / modeling_roberta.
import { ModelBuilder } from './builder.js';
import type { ConfigReader, ModelFolder } from './folder.js';
import type { Architecture, BuiltModel, ModelOptions, Task } from './types.js';
import type { Value } from '../onnx/graph.js';

function activation(b: ModelBuilder, x: Value, act: string, where: string): Value {
  if (act === 'gelu') return b.g.op1('Gelu', [x]);
  if (act === 'gelu_new' || act === 'gelu_pytorch_tanh') return b.g.op1('Gelu', [x], { approximate: 'tanh' });
  if (act === 'relu') return b.g.op1('Relu', [x]);
  throw new Error(`${where}: hidden_act "${act}" is not supported (gelu, gelu_new, relu)`);
}

export function buildEncoder(folder: ModelFolder, cfg: ConfigReader, opts: { task: Task } & ModelOptions): BuiltModel {
  const roberta = cfg.str('model_type') === 'roberta';
  const b = new ModelBuilder(folder, 42, opts.weights, opts.build, opts.precision);
  const g = b.g;
  const D = cfg.num('hidden_size'),
    H = cfg.num('num_attention_heads'),
    L = cfg.num('num_hidden_layers');
  const F = cfg.num('intermediate_size'),
    V = cfg.num('vocab_size');
  const eps = cfg.num('layer_norm_eps', 1e-12),
    act = cfg.str('hidden_act', 'gelu');
  const P = cfg.num('max_position_embeddings', 512),
    T = cfg.num('type_vocab_size', 2);
  const pad = cfg.num('pad_token_id', roberta ? 1 : 0);
  const dh = D / H;
  const base = roberta ? 'roberta' : 'bert';
  // Saved by BertModel the names have no "bert." prefix; by a task class they do.
  const pre = folder.weights.has(`${base}.embeddings.word_embeddings.weight`) ? `${base}.` : '';

  b.checkPositions(roberta ? P - pad - 1 : P, roberta ? 'RoBERTa' : 'BERT');
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask0 = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const inputs = ['input_ids', 'attention_mask'];
  let types0: Value | undefined;
  if (!roberta) {
    types0 = g.input('token_type_ids', 'int64', ['batch', 'seq']);
    inputs.push('token_type_ids');
  }
  const x = g.scope(`${pre}embeddings`, () => {
    const word = b.embedding(`${pre}embeddings.word_embeddings`, ids, V, D);
    // A soft prompt's virtual tokens come first, with positions 0…P−1 and token type 0, as PEFT feeds inputs_embeds.
    const { emb, mask } = b.prependPrompt(word, mask0, D);
    const types = types0
      ? b.promptTokens
        ? g.op1('Concat', [b.onesLike(mask0, b.promptTokens, 0), types0], { axis: 1 })
        : types0
      : g.op1('Mul', [mask, g.constant(0, 'int64', [])]);
    let pos: Value;
    // With prefix tuning, positions continue after the P prefix tokens, as transformers does given past_key_values.
    const offset = (t: Value): Value =>
      b.prefixTokens ? g.op1('Add', [t, g.constant(b.prefixTokens, 'int64', [])]) : t;
    if (!roberta) pos = offset(b.arange(mask));
    else if (b.promptTokens)
      pos = g.op1('Add', [b.arange(mask), g.constant(pad + 1, 'int64', [])]); // from inputs_embeds: sequential
    else {
      // RoBERTa counts positions from padding_idx + 1 over non-pad tokens (create_position_ids_from_input_ids).
      const notPad = g.op1('Cast', [g.op1('Not', [g.op1('Equal', [ids, g.constant(pad, 'int64', [])])])], { to: 7 });
      pos = g.op1('Add', [
        g.op1('Mul', [offset(g.op1('CumSum', [notPad, g.constant(1, 'int64', [])])), notPad]),
        g.constant(pad, 'int64', []),
      ]);
    }
    const e = g.op1('Add', [
      g.op1('Add', [emb, b.embedding(`${pre}embeddings.position_embeddings`, pos, P, D)]),
      b.embedding(`${pre}embeddings.token_type_embeddings`, types, T, D),
    ]);
    return { x: b.layerNorm(`${pre}embeddings.LayerNorm`, e, D, eps), mask };
  });
  b.initPrefix(L, H, dh, D);
  const bias = b.prefixBias(b.attentionBias(x.mask, false));
  let h = x.x;
  for (let l = 0; l < L; l++) {
    const p = `${pre}encoder.layer.${l}`;
    const xin = h;
    h = g.scope(p, () => {
      const x = xin;
      const q = b.splitHeads(b.linear(`${p}.attention.self.query`, x, D, D, true), H, dh);
      const { k, v } = b.withPrefix(
        b.splitHeads(b.linear(`${p}.attention.self.key`, x, D, D, true), H, dh),
        b.splitHeads(b.linear(`${p}.attention.self.value`, x, D, D, true), H, dh),
        x,
      );
      const ctx = b.mergeHeads(b.attend(q, k, v, bias, 1 / Math.sqrt(dh)), D);
      const a = b.layerNorm(
        `${p}.attention.output.LayerNorm`,
        g.op1('Add', [b.linear(`${p}.attention.output.dense`, ctx, D, D, true), x]),
        D,
        eps,
      );
      b.record({ name: `${p}.attention`, type: 'Attention', params: [], input: x.name, output: a.name, in: D, out: D });
      const inter = activation(b, b.linear(`${p}.intermediate.dense`, a, D, F, true), act, folder.dir);
      const o = b.layerNorm(
        `${p}.output.LayerNorm`,
        g.op1('Add', [b.linear(`${p}.output.dense`, inter, F, D, true), a]),
        D,
        eps,
      );
      b.record({
        name: `${p}.output`,
        type: 'FeedForward',
        params: [],
        input: inter.name,
        output: o.name,
        in: F,
        out: D,
      });
      return o;
    });
  }

  const labelsCount = opts.task === 'regression' ? 1 : (opts.numLabels ?? numLabelsOf(cfg));
  const std = cfg.num('initializer_range', 0.02);
  const cls = b.firstToken(h);
  let logits: Value;
  if (roberta) {
    // RobertaClassificationHead: dense → tanh → out_proj on the <s> token.
    const h = g.op1('Tanh', [b.linear('classifier.dense', cls, D, D, true, { create: { normal: std } })]);
    logits = b.linear('classifier.out_proj', h, D, labelsCount, true, { create: { normal: std } });
  } else {
    const pooled = g.op1('Tanh', [b.linear(`${pre}pooler.dense`, cls, D, D, true, { create: { normal: std } })]);
    logits = b.linear('classifier', pooled, D, labelsCount, true, { create: { normal: std } });
  }
  g.output(logits, 'logits');
  const loss = headLoss(b, logits, opts.task);
  g.output(loss);
  return {
    architecture: roberta ? 'RobertaForSequenceClassification' : 'BertForSequenceClassification',
    modelType: roberta ? 'roberta' : 'bert',
    task: opts.task,
    graph: g,
    inputs: [...inputs, 'labels'],
    logits: 'logits',
    loss: loss.name,
    modules: b.modules,
    created: b.created,
    builder: b,
    numLabels: labelsCount,
    dims: { hidden: D, layers: L, heads: H, vocab: V },
  };
}

export function numLabelsOf(cfg: ConfigReader): number {
  const id2label = cfg.config.id2label;
  if (id2label && typeof id2label === 'object') return Object.keys(id2label).length;
  return cfg.num('num_labels', 2);
}

/** Cross-entropy for classification, mean squared error for regression (transformers' problem types). */
export function headLoss(b: ModelBuilder, logits: Value, task: Task): Value {
  const g = b.g;
  if (task === 'regression') {
    const y = g.input('labels', 'float32', ['batch']);
    const d = g.op1('Sub', [g.op1('Squeeze', [logits, b.i64([1])]), y]);
    return g.op1('ReduceMean', [g.op1('Mul', [d, d])], { keepdims: 0 }, { names: ['loss'] });
  }
  const y = g.input('labels', 'int64', ['batch']);
  return g.op1('SoftmaxCrossEntropyLoss', [logits, y], {}, { names: ['loss'] });
}

export const BERT: Architecture = {
  modelTypes: ['bert', 'roberta'],
  defaultTask: 'classification',
  tasks: ['classification', 'regression'],
  layerKeys: ['num_hidden_layers'],
  build: buildEncoder,
};
