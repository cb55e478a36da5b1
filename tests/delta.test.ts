import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildGradients } from '../native/autodiff/backward.js';
import { applyDeltas, loadWithDeltas, parseDeltaConfig, type AppliedDelta } from '../native/delta/index.js';
import { existsSync } from 'node:fs';
import { mergeDeltas } from '../native/delta/merge.js';
import { selectModules } from '../native/delta/addressing.js';
import type { HostTensor } from '../native/onnx/graph.js';
import type { TensorRef } from '../native/onnx/safetensors.js';
import { readSafetensorsHeader } from '../native/onnx/safetensors.js';
import { loadModel, type BuiltModel, type Task } from '../native/models/index.js';
import type { ModelFolder } from '../native/models/folder.js';
import { openInline } from '../native/runtime/host.js';
import { StepRunner } from '../native/train/runner.js';
import { evaluationGraph } from '../native/train/trainer.js';
import { Rng } from '../native/rng.js';
import { buildTrainStep } from '../native/train/step.js';
import { f64, readReference, relErr } from './support/reference.js';
import { toFloat32, viewAs } from '../native/onnx/dtype.js';
import { readTensorBytes } from '../native/onnx/safetensors.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const TASK: Record<string, Task> = {
  bert: 'classification',
  roberta: 'classification',
  gpt2: 'causal-lm',
  llama: 'causal-lm',
  qwen2: 'causal-lm',
  t5: 'seq2seq',
  't5-gated': 'seq2seq',
};

function readDeltaRef(name: string, method: string): { t: Map<string, HostTensor>; meta: Record<string, string> } {
  const file = join(FIXTURES, name, `delta-${method}.safetensors`);
  const h = readSafetensorsHeader(file);
  const t = new Map<string, HostTensor>();
  for (const [k, ref] of h.tensors)
    t.set(k, { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, readTensorBytes(ref)) });
  return { t, meta: h.metadata };
}

function feeds(m: BuiltModel, ref: Map<string, HostTensor>): Record<string, HostTensor> {
  const f: Record<string, HostTensor> = {};
  for (const n of m.inputs) {
    if (ref.has(n)) f[n] = ref.get(n)!;
    else if (n === 'decoder_attention_mask') {
      const d = ref.get('decoder_input_ids')!;
      f[n] = { dtype: 'int64', shape: d.shape, data: new BigInt64Array(d.data.length).fill(1n) };
    }
  }
  return f;
}

const realPositions = (m: BuiltModel, ref: Map<string, HostTensor>) => {
  if (m.task !== 'causal-lm') return undefined;
  const mask = f64(ref.get('attention_mask')!);
  const V = ref.get('logits')!.shape[2];
  return (i: number) => mask[Math.floor(i / V)] === 1;
};

/** Runs the model with the delta parameters set to `values` (by plugin name); returns logits, loss and gradients. */
async function runWithDelta(
  m: BuiltModel,
  applied: AppliedDelta,
  values: Map<string, HostTensor>,
  ref: Map<string, HostTensor>,
) {
  const g = m.graph;
  for (const p of applied.params) if (g.initializers.has(p.value)) g.promoteToInput(p.value);
  const grads = buildGradients(g, { loss: m.loss, wrt: applied.params.map((p) => p.value) });
  for (const p of applied.params) g.output(grads.get(p.value)!, `grad::${p.name}`);
  const s = await openInline(g, { device: 'cpu' });
  const f = feeds(m, ref);
  for (const p of applied.params) f[p.value] = values.get(p.name) ?? applied.initial[p.value];
  const out = await s.run(f);
  await s.release();
  return out;
}

describe('delta methods equal their PyTorch references', () => {
  const configs: Record<string, (name: string) => unknown> = {
    bitfit: () => ({ method: 'bitfit' }),
    // The reference scales layer.N.output.dense only; PEFT's default "output.dense" also takes attention.output.dense.
    ia3: (name) =>
      name === 'bert'
        ? {
            method: 'ia3',
            target_modules: ['key', 'value', '[r]\\d+\\.output\\.dense'],
            feedforward_modules: ['[r]\\d+\\.output\\.dense'],
          }
        : { method: 'ia3' },
    adapter: () => ({ method: 'adapter', bottleneck_dim: 8 }),
    parallel_adapter: () => ({ method: 'parallel_adapter', bottleneck_dim: 8 }),
    low_rank_adapter: () => ({ method: 'low_rank_adapter', reduction_factor: 4 }),
    soft_prompt: () => ({ method: 'soft_prompt', soft_token_num: 3 }),
    prefix: () => ({ method: 'prefix', prefix_token_num: 2, mid_dim: 16 }),
    compacter: () => ({ method: 'compacter', reduction_factor: 4, hypercomplex_division: 4, phm_rank: 1 }),
    combo: () => ({
      deltas: [
        { method: 'bitfit' },
        { method: 'adapter', bottleneck_dim: 8 },
        { method: 'soft_prompt', soft_token_num: 3 },
      ],
    }),
  };
  for (const name of ['bert', 'llama', 't5']) {
    for (const method of Object.keys(configs)) {
      if (!existsSync(join(FIXTURES, name, `delta-${method}.safetensors`))) continue;
      test(`${method} on ${name}: logits, loss and delta gradients`, async () => {
        const { t, meta } = readDeltaRef(name, method);
        const ref = readReference(join(FIXTURES, name));
        const { model: m, applied } = loadWithDeltas(
          join(FIXTURES, name),
          { task: TASK[name] },
          parseDeltaConfig(configs[method](name)),
        );
        if (method !== 'combo')
          assert.deepEqual([...applied.methods[0].modules].sort(), [...JSON.parse(meta.modules)].sort());
        assert.equal(
          applied.params.reduce((a, p) => a + applied.initial[p.value].data.length, 0),
          Number(meta.trainable_params),
        );
        const values = new Map([...t].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6), v]));
        for (const p of applied.params) assert.ok(values.has(p.name), `reference has ${p.name}`);
        const out = await runWithDelta(m, applied, values, ref);
        const le = relErr(out.logits, t.get('logits')!, realPositions(m, ref));
        assert.ok(le < 1e-4, `logits relative error ${le}`);
        assert.ok(Math.abs(f64(out[m.loss])[0] - f64(t.get('loss')!)[0]) < 1e-4 * Math.abs(f64(t.get('loss')!)[0]));
        for (const p of applied.params) {
          const e = relErr(out[`grad::${p.name}`], t.get(`grad.${p.name}`)!, undefined, 1e-5);
          assert.ok(e < 1e-3, `gradient of ${p.name} (${p.method}): relative error ${e}`);
        }
      });
    }
  }

  for (const name of ['bert', 'roberta', 'gpt2', 'llama', 'qwen2', 't5', 't5-gated']) {
    test(`lora on ${name} (the backbone fixtures' low-rank branch)`, async () => {
      const dir = join(FIXTURES, name);
      const ref = readReference(dir);
      const meta = readSafetensorsHeader(join(dir, 'reference.safetensors')).metadata;
      const m = loadModel(dir, { task: TASK[name] });
      const applied = applyDeltas(
        m,
        parseDeltaConfig({ method: 'lora', r: 4, alpha: 8, modified_modules: JSON.parse(meta.lora_modules) }),
      );
      const values = new Map([...ref].filter(([k]) => k.startsWith('lora.')).map(([k, v]) => [k.slice(5), v]));
      const out = await runWithDelta(m, applied, values, ref);
      const le = relErr(out.logits, ref.get('lora_logits')!, realPositions(m, ref));
      assert.ok(le < 1e-4, `logits relative error ${le}`);
      for (const p of applied.params) {
        const e = relErr(out[`grad::${p.name}`], ref.get(`lora_grad.${p.name}`)!);
        assert.ok(e < 1e-3, `gradient of ${p.name}: relative error ${e}`);
      }
    });
  }
});

describe('merging', () => {
  test('(IA)³ merged into the weights gives the unmerged logits, and unmerging restores the weights', async () => {
    const { t } = readDeltaRef('llama', 'ia3');
    const dir = join(FIXTURES, 'llama');
    const ref = readReference(dir);
    const m = loadModel(dir);
    const applied = applyDeltas(m, parseDeltaConfig({ method: 'ia3' }));
    const values: Record<string, HostTensor> = {};
    for (const p of applied.params) values[p.value] = t.get(`param.${p.name}`)!;
    const merged = mergeDeltas(m, applied, values);
    const plain = loadModel(dir, { weights: merged });
    assert.equal(plain.graph.nodes.filter((n) => n.inputs.some((i) => i.endsWith('ia3_l'))).length, 0);
    const s = await openInline(plain.graph, { device: 'cpu' });
    const out = await s.run(feeds(plain, ref));
    await s.release();
    assert.ok(relErr(out.logits, t.get('merged_logits')!, realPositions(plain, ref)) < 1e-5);
    const back = mergeDeltas(m, applied, values, -1, merged);
    const w = 'model.layers.0.mlp.down_proj.weight';
    const base = toFloat32('bfloat16', readTensorBytes(m.builder.folder.weights.get(w)!));
    const restored = f64(back[w]);
    for (let i = 0; i < base.length; i++)
      assert.ok(Math.abs(restored[i] - base[i]) <= 1e-6 * Math.max(1, Math.abs(base[i])), `${w}[${i}]`);
  });

  test('LoRA merged into GPT-2 Conv1D and Llama Linear weights gives the same logits', async () => {
    for (const name of ['gpt2', 'llama']) {
      const dir = join(FIXTURES, name);
      const ref = readReference(dir);
      const meta = readSafetensorsHeader(join(dir, 'reference.safetensors')).metadata;
      const m = loadModel(dir);
      const applied = applyDeltas(
        m,
        parseDeltaConfig({ method: 'lora', r: 4, alpha: 8, modified_modules: JSON.parse(meta.lora_modules) }),
      );
      const values: Record<string, HostTensor> = {};
      for (const p of applied.params) values[p.value] = ref.get(`lora.${p.name}`)!;
      const plain = loadModel(dir, { weights: mergeDeltas(m, applied, values) });
      const s = await openInline(plain.graph, { device: 'cpu' });
      const out = await s.run(feeds(plain, ref));
      await s.release();
      const e = relErr(out.logits, ref.get('lora_logits')!, realPositions(plain, ref));
      assert.ok(e < 1e-5, `${name}: merged logits relative error ${e}`);
    }
  });

  test('LoRA and input-scaling (IA)³ on one module merge in graph order (the vector scales only the base weight)', async () => {
    const dir = join(FIXTURES, 'llama');
    const cfgs = parseDeltaConfig([
      { method: 'lora', r: 2, alpha: 4, target_modules: ['down_proj'] },
      { method: 'ia3', target_modules: ['down_proj'], feedforward_modules: ['down_proj'] },
    ]);
    const { model, applied } = loadWithDeltas(dir, { task: 'causal-lm' }, cfgs, 0);
    const rng = new Rng(3);
    const values: Record<string, HostTensor> = {};
    for (const p of applied.params) {
      const t = applied.initial[p.value];
      values[p.value] = { ...t, data: Float32Array.from(t.data as Float32Array, (x) => x + 0.3 * rng.normal()) };
    }
    const ids = BigInt64Array.from([1n, 5n, 9n, 3n, 7n]);
    const batch = {
      input_ids: { dtype: 'int64' as const, shape: [1, 5], data: ids },
      attention_mask: { dtype: 'int64' as const, shape: [1, 5], data: new BigInt64Array(5).fill(1n) },
      labels: { dtype: 'int64' as const, shape: [1, 5], data: ids },
    };
    const s1 = await openInline(evaluationGraph(model, applied.trainable), { device: 'cpu' });
    const want = (await s1.run({ ...batch, ...values })).logits.data as Float32Array;
    const plain = loadModel(dir, { task: 'causal-lm', weights: mergeDeltas(model, applied, values) });
    const s2 = await openInline(evaluationGraph(plain, []), { device: 'cpu' });
    const got = (await s2.run(batch)).logits.data as Float32Array;
    await s1.release();
    await s2.release();
    const diff = Math.max(...want.map((x, i) => Math.abs(x - got[i])));
    assert.ok(diff < 1e-4, `merged logits differ by ${diff}`);
  });

  test('methods that cannot be merged are refused', () => {
    const m = loadModel(join(FIXTURES, 'bert'));
    const applied = applyDeltas(m, parseDeltaConfig({ method: 'bitfit' }));
    assert.throws(
      () => mergeDeltas(m, applied, {}),
      /bitfit cannot be merged into the base weights \(only lora and ia3 can\)/,
    );
  });
});

/** A model folder that exists only as shapes: enough to build graphs and count parameters. */
function shapeOnlyBert(L: number, D: number, F: number, V: number): ModelFolder {
  const weights = new Map<string, TensorRef>();
  const add = (name: string, shape: number[]) =>
    weights.set(name, {
      name,
      dtype: 'float32',
      shape,
      file: '/nonexistent',
      realFile: '/nonexistent',
      offset: 0,
      length: shape.reduce((a, b) => a * b, 1) * 4,
    });
  add('bert.embeddings.word_embeddings.weight', [V, D]);
  add('bert.embeddings.position_embeddings.weight', [512, D]);
  add('bert.embeddings.token_type_embeddings.weight', [2, D]);
  add('bert.embeddings.LayerNorm.weight', [D]);
  add('bert.embeddings.LayerNorm.bias', [D]);
  add('bert.pooler.dense.weight', [D, D]);
  add('bert.pooler.dense.bias', [D]);
  for (let l = 0; l < L; l++) {
    const p = `bert.encoder.layer.${l}`;
    for (const mm of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense']) {
      add(`${p}.${mm}.weight`, [D, D]);
      add(`${p}.${mm}.bias`, [D]);
    }
    add(`${p}.intermediate.dense.weight`, [F, D]);
    add(`${p}.intermediate.dense.bias`, [F]);
    add(`${p}.output.dense.weight`, [D, F]);
    add(`${p}.output.dense.bias`, [D]);
    for (const n of ['attention.output.LayerNorm', 'output.LayerNorm']) {
      add(`${p}.${n}.weight`, [D]);
      add(`${p}.${n}.bias`, [D]);
    }
  }
  return {
    dir: 'bert-base (shapes only)',
    files: [],
    weights,
    config: {
      model_type: 'bert',
      hidden_size: D,
      num_attention_heads: 12,
      num_hidden_layers: L,
      intermediate_size: F,
      vocab_size: V,
      num_labels: 2,
    },
  };
}

describe('trainable counts equal hand-computed ones', () => {
  test('LoRA r=8 on query/value of a 12-layer, 768-wide BERT = 294,912 (+ the new 2-class head)', () => {
    const m = loadModel(shapeOnlyBert(12, 768, 3072, 30522));
    const applied = applyDeltas(m, parseDeltaConfig({ method: 'lora', r: 8 }));
    const lora = applied.params
      .filter((p) => p.method === 'lora')
      .reduce((a, p) => a + applied.initial[p.value].data.length, 0);
    assert.equal(lora, 12 * 2 * (8 * 768 + 768 * 8));
    assert.equal(lora, 294912);
    const head = applied.params
      .filter((p) => p.method === 'new head')
      .map((p) => p.name)
      .sort();
    assert.deepEqual(head, ['classifier.bias', 'classifier.weight']);
  });

  test('(IA)³ defaults on BERT-base: keys, values and the feed-forward inputs', () => {
    const m = loadModel(shapeOnlyBert(12, 768, 3072, 30522));
    const applied = applyDeltas(m, parseDeltaConfig({ method: 'ia3' }));
    const n = applied.params
      .filter((p) => p.method === 'ia3')
      .reduce((a, p) => a + applied.initial[p.value].data.length, 0);
    // PEFT's "output.dense" suffix also takes attention.output.dense (input 768): 768 + 768 + 3072 + 768 per layer.
    assert.equal(n, 12 * (768 + 768 + 3072 + 768));
  });
});

describe('addressing, as OpenDelta and PEFT do it', () => {
  const bert = () => loadModel(join(FIXTURES, 'bert'));
  const names = (m: BuiltModel, cfg: object, accepts = ['Linear', 'Conv1D', 'LayerNorm', 'RMSNorm']) =>
    selectModules(m, cfg, 'test', accepts).map((x) => x.name);

  test('a suffix matches at dot boundaries only', () => {
    assert.deepEqual(names(bert(), { modified_modules: ['query'] }), [
      'bert.encoder.layer.0.attention.self.query',
      'bert.encoder.layer.1.attention.self.query',
    ]);
    assert.throws(
      () => names(bert(), { modified_modules: ['uery'] }),
      /"uery" matches no module of this BertForSequenceClassification; close names: query/,
    );
    assert.deepEqual(names(bert(), { modified_modules: ['layer.1.attention.self.query'] }), [
      'bert.encoder.layer.1.attention.self.query',
    ]);
  });

  test('"[r]" regular expressions must end the name and start at a dot', () => {
    assert.deepEqual(names(bert(), { modified_modules: ['[r][0]\\.attention\\.self\\.(query|value)'] }), [
      'bert.encoder.layer.0.attention.self.query',
      'bert.encoder.layer.0.attention.self.value',
    ]);
    // "output.dense" inside "attention.output.dense" is a dot-boundary suffix too; "\\d+\\.output" pins the layer's own.
    assert.deepEqual(names(bert(), { modified_modules: ['[r]\\d+\\.output\\.dense'] }), [
      'bert.encoder.layer.0.output.dense',
      'bert.encoder.layer.1.output.dense',
    ]);
    assert.throws(() => names(bert(), { modified_modules: ['[r]uery'] }), /matches no module/);
    assert.throws(
      () => names(bert(), { modified_modules: ['[r](query'] }),
      /"\[r\]\(query" is not a valid regular expression/,
    );
  });

  test('a container selects its Linear modules; exclude_modules leaves some alone', () => {
    assert.deepEqual(names(bert(), { modified_modules: ['layer.0.attention'] }), [
      'bert.encoder.layer.0.attention.self.query',
      'bert.encoder.layer.0.attention.self.key',
      'bert.encoder.layer.0.attention.self.value',
      'bert.encoder.layer.0.attention.output.dense',
    ]);
    assert.deepEqual(names(bert(), { modified_modules: ['attention'], exclude_modules: ['layer.1', 'key'] }), [
      'bert.encoder.layer.0.attention.self.query',
      'bert.encoder.layer.0.attention.self.value',
      'bert.encoder.layer.0.attention.output.dense',
    ]);
  });

  test('PEFT: a list matches suffixes, one string is a regex over the whole name', () => {
    assert.deepEqual(names(bert(), { target_modules: ['query', 'value'] }).length, 4);
    assert.deepEqual(names(bert(), { target_modules: '.*layer\\.1\\..*(query|value)' }), [
      'bert.encoder.layer.1.attention.self.query',
      'bert.encoder.layer.1.attention.self.value',
    ]);
    assert.throws(() => names(bert(), { target_modules: 'query' }), /matches no module/); // fullmatch, not search
  });

  test('common structure names address every family alike', () => {
    const one = (name: string, key: string) => names(loadModel(join(FIXTURES, name)), { modified_modules: [key] });
    assert.deepEqual(one('bert', 'attn@.q@'), [
      'bert.encoder.layer.0.attention.self.query',
      'bert.encoder.layer.1.attention.self.query',
    ]);
    assert.deepEqual(one('llama', 'attn@.q@'), ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj']);
    assert.deepEqual(one('t5', 'attn@.q@'), [
      'encoder.block.0.layer.0.SelfAttention.q',
      'encoder.block.1.layer.0.SelfAttention.q',
      'decoder.block.0.layer.0.SelfAttention.q',
      'decoder.block.1.layer.0.SelfAttention.q',
    ]);
    assert.deepEqual(one('gpt2', 'ff@.w2@'), ['transformer.h.0.mlp.c_proj', 'transformer.h.1.mlp.c_proj']);
    assert.deepEqual(one('llama', 'ff@.layer_norm@'), [
      'model.layers.0.post_attention_layernorm',
      'model.layers.1.post_attention_layernorm',
    ]);
    assert.throws(
      () => one('gpt2', 'attn@.q@'),
      /"attn@\.q@" matches no module of this GPT2LMHeadModel; close names: .*qkv@/,
    );
  });

  test('PEFT defaults per family when no modules are named', () => {
    const lora = (name: string) =>
      applyDeltas(loadModel(join(FIXTURES, name)), parseDeltaConfig({ method: 'lora', r: 2 })).methods[0].modules.map(
        (s) => s.split('.').pop(),
      );
    assert.deepEqual([...new Set(lora('bert'))], ['query', 'value']);
    assert.deepEqual([...new Set(lora('gpt2'))], ['c_attn']);
    assert.deepEqual([...new Set(lora('llama'))], ['q_proj', 'v_proj']);
    assert.deepEqual([...new Set(lora('t5'))], ['q', 'v']);
  });
});

describe('bad delta configs are clear errors before any graph runs', () => {
  const m = () => loadModel(join(FIXTURES, 'bert'));
  test('unknown method or key lists the valid ones', () => {
    assert.throws(
      () => parseDeltaConfig({ method: 'dora' }),
      /unknown method "dora" \(methods: lora, bitfit, ia3, head-only, full, adapter, parallel_adapter, low_rank_adapter, compacter, soft_prompt, prefix\)/,
    );
    assert.throws(
      () => parseDeltaConfig({ method: 'lora', rank: 8 }),
      /lora: unknown config key "rank" \(valid: r, alpha \(PEFT: lora_alpha\), dropout \(PEFT: lora_dropout\), rslora \(PEFT: use_rslora\), modified_modules, target_modules, exclude_modules\)/,
    );
    assert.throws(
      () => parseDeltaConfig({ method: 'lora', r: 'eight' }),
      /lora: "r" must be a non-negative integer, got "eight"/,
    );
    assert.throws(() => parseDeltaConfig({}), /entry 0 has no "method"/);
  });
  test("PEFT's own spellings are the same settings; both given and different is an error naming both", () => {
    // peft/tuners/lora/config.py LoraConfig: r, lora_alpha, lora_dropout, use_rslora, target_modules;
    // tuners/prefix_tuning/config.py: num_virtual_tokens, encoder_hidden_size, prefix_projection;
    // tuners/prompt_tuning/config.py: num_virtual_tokens, prompt_tuning_init_text.
    assert.deepEqual(
      parseDeltaConfig({
        method: 'lora',
        r: 4,
        lora_alpha: 16,
        lora_dropout: 0.1,
        use_rslora: true,
        target_modules: ['query'],
      }),
      parseDeltaConfig({ method: 'lora', r: 4, alpha: 16, dropout: 0.1, rslora: true, target_modules: ['query'] }),
    );
    assert.deepEqual(parseDeltaConfig({ method: 'lora', alpha: 16, lora_alpha: 16 })[0].alpha, 16);
    assert.deepEqual(
      parseDeltaConfig({ method: 'prefix', num_virtual_tokens: 3, encoder_hidden_size: 8, prefix_projection: false }),
      parseDeltaConfig({ method: 'prefix', prefix_token_num: 3, mid_dim: 8, reparameterize: false }),
    );
    assert.deepEqual(
      parseDeltaConfig({ method: 'soft_prompt', num_virtual_tokens: 5, prompt_tuning_init_text: 'hi', init: 'text' }),
      parseDeltaConfig({ method: 'soft_prompt', soft_token_num: 5, init_text: 'hi', init: 'text' }),
    );
    // What is kept is our key only: a plugin's methods read the same whoever wrote them.
    assert.ok(!('lora_alpha' in parseDeltaConfig({ method: 'lora', lora_alpha: 16 })[0]));
    assert.throws(
      () => parseDeltaConfig({ method: 'lora', alpha: 8, lora_alpha: 16 }),
      (e: Error) =>
        e.message ===
        'lora: "alpha" is 8 but "lora_alpha" is 16, and they are one setting (alpha; PEFT calls it lora_alpha); give one of them',
    );
    assert.throws(
      () => parseDeltaConfig({ method: 'lora', use_rslora: true, rslora: false }),
      /"use_rslora" is true but "rslora" is false/,
    );
    assert.throws(
      () => parseDeltaConfig({ method: 'lora', lora_alpha: 'x' }),
      /lora: "lora_alpha" must be a number, got "x"/,
    );
    // The same names train the same graph.
    const a = applyDeltas(m(), parseDeltaConfig({ method: 'lora', r: 2, lora_alpha: 6 }));
    const b = applyDeltas(m(), parseDeltaConfig({ method: 'lora', r: 2, alpha: 6 }));
    assert.deepEqual(a.methods[0].config, b.methods[0].config);
  });
  test('a rank larger than the layer', () => {
    assert.throws(
      () => applyDeltas(m(), parseDeltaConfig({ method: 'lora', r: 64 })),
      /lora: rank 64 is larger than bert\.encoder\.layer\.0\.attention\.self\.query \(32 → 32\); use r ≤ 32/,
    );
  });
  test("prefixes and prompts that leave no room in a family's absolute positions", () => {
    assert.throws(
      () => loadWithDeltas(join(FIXTURES, 'gpt2'), {}, parseDeltaConfig({ method: 'prefix', prefix_token_num: 64 })),
      /prefix \(64 tokens\) leave no room for text in GPT-2's 64 absolute positions/,
    );
    assert.throws(
      () =>
        loadWithDeltas(join(FIXTURES, 'bert'), {}, parseDeltaConfig({ method: 'soft_prompt', soft_token_num: 100 })),
      /soft_prompt \(100 tokens\) leave no room for text in BERT's 64 absolute positions/,
    );
    assert.throws(
      () =>
        parseDeltaConfig({ method: 'prefix', prefix_token_num: 0 }) &&
        loadWithDeltas(join(FIXTURES, 'llama'), {}, parseDeltaConfig({ method: 'prefix', prefix_token_num: 0 })),
      /prefix_token_num must be at least 1/,
    );
  });

  test('a module of a type the method cannot modify', () => {
    assert.throws(
      () => applyDeltas(m(), parseDeltaConfig({ method: 'lora', modified_modules: ['attention.output.LayerNorm'] })),
      /selects bert\.encoder\.layer\.0\.attention\.output\.LayerNorm, a LayerNorm; lora modifies Linear, Conv1D modules/,
    );
  });
});

describe('a combined delta trains', () => {
  test('BitFit + LoRA + (IA)³ on Llama: every part moves and the loss falls', async () => {
    const dir = join(FIXTURES, 'llama');
    const ref = readReference(dir);
    const m = loadModel(dir);
    const applied = applyDeltas(
      m,
      parseDeltaConfig({
        deltas: [{ method: 'lora', r: 2 }, { method: 'bitfit', modified_modules: ['attn@.o@'] }, { method: 'ia3' }],
      }),
    );
    assert.deepEqual(
      applied.methods.map((x) => x.method),
      ['bitfit', 'lora', 'ia3'],
      'specification first, then reparameterisation',
    );
    const graphs = buildTrainStep({
      forward: m.graph,
      loss: m.loss,
      trainable: applied.trainable,
      optimizer: { weightDecay: 0 },
    });
    const runner = await StepRunner.open(graphs, applied.initial, { inWorker: false });
    const f = feeds(m, ref);
    const losses: number[] = [];
    for (let i = 0; i < 30; i++) losses.push((await runner.step([f], 0.01)).loss);
    assert.ok(losses[29] < losses[0] - 0.1, `loss ${losses[0]} → ${losses[29]}`);
    for (const method of ['bitfit', 'lora', 'ia3']) {
      const p = applied.params.find((q) => q.method === method && !q.name.endsWith('lora_A'))!;
      const before = applied.initial[p.value].data as Float32Array,
        after = runner.params[p.value].data as Float32Array;
      assert.ok(
        after.some((v, i) => v !== before[i]),
        `${p.name} moved`,
      );
    }
    await runner.release();
  });
});

describe('the delta report and inspect --delta', () => {
  test('counts, percent, exact plugin size and the memory estimate', async () => {
    const { mkdtempSync, statSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { writeSafetensors } = await import('../native/onnx/safetensors.js');
    const { deltaReport } = await import('../native/delta/report.js');
    const m = loadModel(join(FIXTURES, 'bert'));
    const applied = applyDeltas(m, parseDeltaConfig({ method: 'lora', r: 4 }));
    const r = deltaReport(m, applied, { batch: 2, seq: 16 });
    assert.equal(r.trainable_params, 2 * 2 * (4 * 32 + 32 * 4));
    assert.equal(r.backbone_params, 24835);
    assert.ok(Math.abs(r.trainable_percent - (100 * 1024) / 24835) < 1e-12);
    assert.deepEqual(
      r.matched_modules.map((x) => x.name),
      [
        'bert.encoder.layer.0.attention.self.query',
        'bert.encoder.layer.0.attention.self.value',
        'bert.encoder.layer.1.attention.self.query',
        'bert.encoder.layer.1.attention.self.value',
      ],
    );
    // The plugin file has exactly the reported size.
    const dir = mkdtempSync(join(tmpdir(), 'ds-plugin-'));
    const file = join(dir, 'p.safetensors');
    writeSafetensors(file, Object.fromEntries(applied.params.map((p) => [p.name, applied.initial[p.value]])), {
      format: 'delta-studio-plugin',
      methods: JSON.stringify(applied.methods.map((x) => x.config)),
    });
    assert.equal(statSync(file).size, r.plugin_bytes);
    // Memory: weights in place + 16 bytes per trainable parameter + activations (2 blocks, B=2, S=16, D=32, H=4).
    assert.equal(r.estimate.optimizer_bytes, 16 * 1024);
    assert.equal(r.estimate.activation_bytes, 2 * (68 * 2 * 16 * 32 + 10 * 2 * 4 * 16 * 16));
    assert.equal(
      r.estimated_train_memory_bytes,
      r.estimate.weights_bytes + r.estimate.optimizer_bytes + r.estimate.activation_bytes,
    );
    const cfg = join(dir, 'delta.json');
    writeFileSync(cfg, JSON.stringify({ method: 'lora', r: 4 }));
    const bin = fileURLToPath(new URL('../bin/delta-studio.js', import.meta.url));
    const { execFileSync } = await import('node:child_process');
    const out = JSON.parse(
      execFileSync(
        process.execPath,
        [bin, 'inspect', join(FIXTURES, 'bert'), '--delta', cfg, '--json', '--batch', '2', '--seq', '16'],
        { encoding: 'utf8' },
      )
        .trim()
        .split('\n')
        .pop()!,
    );
    assert.equal(out.trainable_params, 1024);
    assert.equal(out.plugin_bytes, r.plugin_bytes);
    assert.equal(out.estimated_train_memory_bytes, r.estimated_train_memory_bytes);
    assert.equal(out.matched_modules.length, 4);
    assert.ok(
      out.modules.some(
        (x: { name: string; delta?: string[] }) =>
          x.name === 'bert.encoder.layer.0-1.attention.self.query' && x.delta?.[0] === 'lora',
      ),
    );
    const text = execFileSync(process.execPath, [bin, 'inspect', join(FIXTURES, 'bert'), '--delta', cfg], {
      encoding: 'utf8',
    });
    assert.match(text, /query +Linear ◆ lora/);
    assert.match(text, /trainable parameters: 1,024 \(4\.12% of 24,835\)/);
    rmSync(dir, { recursive: true });
  });
});

describe('prefix plugins keep the projected prefixes', () => {
  test("a model built with the projected prefixes gives the reparameterised model's logits", async () => {
    const { projectPrefix } = await import('../native/delta/methods/prefix/index.js');
    const { t } = readDeltaRef('llama', 'prefix');
    const dir = join(FIXTURES, 'llama');
    const ref = readReference(dir);
    const value = (n: string) => ({
      data: Float32Array.from(t.get(`param.${n}`)!.data as Float32Array),
      shape: t.get(`param.${n}`)!.shape,
    });
    const kv = projectPrefix(value); // [P, layers·2·kvH·dh]
    const { model, applied } = loadWithDeltas(
      dir,
      {},
      parseDeltaConfig({ method: 'prefix', prefix_token_num: 2, reparameterize: false }),
    );
    const p = applied.params.find((x) => x.name === 'prefix.key_values')!;
    const [L, two, kvH, P, dh] = applied.initial[p.value].shape;
    // [P, L, 2, kvH, dh] → [L, 2, kvH, P, dh]
    const direct = new Float32Array(kv.data.length);
    for (let pp = 0; pp < P; pp++)
      for (let l = 0; l < L; l++)
        for (let s = 0; s < two; s++)
          for (let h = 0; h < kvH; h++)
            for (let d = 0; d < dh; d++) {
              direct[(((l * two + s) * kvH + h) * P + pp) * dh + d] =
                kv.data[pp * (L * two * kvH * dh) + ((l * two + s) * kvH + h) * dh + d];
            }
    const out = await runWithDelta(
      model,
      applied,
      new Map([['prefix.key_values', { dtype: 'float32', shape: [L, two, kvH, P, dh], data: direct }]]),
      ref,
    );
    assert.ok(relErr(out.logits, t.get('logits')!, realPositions(model, ref)) < 1e-5);
  });
});

describe('baselines against the full fine-tuning reference', () => {
  test("full: every weight trains and its gradient equals PyTorch's; head-only: the head's (BERT and Llama)", async () => {
    for (const [name, head] of [
      ['bert', ['bert.pooler.dense.bias', 'bert.pooler.dense.weight', 'classifier.bias', 'classifier.weight']],
      ['llama', ['lm_head.weight']],
    ] as const) {
      const dir = join(FIXTURES, name);
      const ref = readReference(dir);
      for (const method of ['full', 'head-only']) {
        const { model, applied } = loadWithDeltas(dir, {}, parseDeltaConfig({ method }));
        const names = applied.params.map((p) => p.name);
        if (method === 'full') assert.equal(names.length, model.builder.folder.weights.size);
        else assert.deepEqual(names.sort(), head);
        const out = await runWithDelta(model, applied, new Map(), ref);
        for (const p of applied.params) {
          const e = relErr(out[`grad::${p.name}`], ref.get(`grad.${p.name}`)!, undefined, 1e-5);
          assert.ok(e < 1e-3, `${name} ${method}: gradient of ${p.name}: ${e}`);
        }
      }
    }
  });

  test("BitFit + Adapter + soft prompt together train (the paper's combinability study)", async () => {
    const dir = join(FIXTURES, 'bert');
    const ref = readReference(dir);
    const { model, applied } = loadWithDeltas(
      dir,
      {},
      parseDeltaConfig({
        deltas: [
          { method: 'soft_prompt', soft_token_num: 3, init: 'vocab' },
          { method: 'adapter', bottleneck_dim: 8 },
          { method: 'bitfit' },
        ],
      }),
    );
    assert.deepEqual(
      applied.methods.map((x) => x.method),
      ['bitfit', 'soft_prompt', 'adapter'],
      'specification first, then additions in the order given',
    );
    const graphs = buildTrainStep({
      forward: model.graph,
      loss: model.loss,
      trainable: applied.trainable,
      optimizer: { weightDecay: 0 },
    });
    const runner = await StepRunner.open(graphs, applied.initial, { inWorker: false });
    const losses: number[] = [];
    for (let i = 0; i < 25; i++) losses.push((await runner.step([feeds(model, ref)], 0.01)).loss);
    assert.ok(losses[24] < 0.5 * losses[0], `loss ${losses[0]} → ${losses[24]}`);
    await runner.release();
  });
});
