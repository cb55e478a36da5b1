// PEFT adapter folders: export of plugins, import of PEFT adapters, round trips and refusals.
//
// The expected layouts follow PEFT's own sources (huggingface/peft):
//  - src/peft/utils/save_and_load.py, get_peft_model_state_dict: LoRA keeps keys containing "lora_" (bias "none");
//    prompt learning saves one tensor, "prompt_embeddings" (get_prompt_embedding_to_save, or the embedding weight in
//    inference mode); modules_to_save wrappers add <module>.<param>; the adapter name is removed from the end of
//    the key ("lora_A.default.weight" → "lora_A.weight", "ia3_l.default" → "ia3_l"). set_peft_model_state_dict
//    loads "prompt_embeddings" into prompt_encoder.embedding.weight with strict=True.
//  - src/peft/utils/other.py, ModulesToSaveWrapper.adapter_state_dict / adapter_state_dict_load_map: a saved head is
//    "<module>.weight" without "modules_to_save.default"; _prepare_prompt_learning_config: num_layers, token_dim,
//    num_attention_heads from config.json, and per key/value head for grouped-query attention (peft#1901).
//  - src/peft/peft_model.py: LoRA/(IA)³ wrap the model in a tuner, so keys start "base_model.model."; prompt learning
//    keeps the transformers model as base_model ("base_model."); PeftModelForSequenceClassification adds
//    ["classifier", "score"] to modules_to_save; seq2seq prompt tuning with num_transformer_submodules 1 prompts
//    the encoder only.
//  - src/peft/config.py (PeftConfig, PromptLearningConfig), tuners/lora/config.py, tuners/ia3/config.py,
//    tuners/prompt_tuning/config.py, tuners/prefix_tuning/config.py: the config keys; PeftConfigMixin.save_pretrained
//    writes json.dumps(indent=2, sort_keys=True).
//  - src/peft/tuners/lora/layer.py (Conv1D: in, out = weight.shape, lora_A [r, in], lora_B [out, r]) and
//    tuners/ia3/layer.py (IA3Layer.update_layer: [1, in] feed-forward, [out, 1] otherwise).
//  - src/peft/utils/constants.py: CONFIG_NAME adapter_config.json, SAFETENSORS_WEIGHTS_NAME adapter_model.safetensors,
//    WEIGHTS_NAME adapter_model.bin.
import assert from 'node:assert/strict';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exportPeft, importPeft } from '../native/export/peft.js';
import { loadWithDeltas, type DeltaConfig } from '../native/delta/index.js';
import { projectPrefix } from '../native/delta/methods/prefix/index.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../native/onnx/safetensors.js';
import { toFloat32, viewAs } from '../native/onnx/dtype.js';
import type { Task } from '../native/models/index.js';
import { readPlugin, writePlugin, type Plugin } from '../native/plugins/format.js';
import { openInline } from '../native/runtime/host.js';
import { evaluationGraph } from '../native/train/trainer.js';
import { readReference, relErr } from './support/reference.js';
import { seededPlugin } from './support/plugins.js';

const FIX = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const BERT = join(FIX, 'bert'),
  LLAMA = join(FIX, 'llama'),
  GPT2 = join(FIX, 'gpt2');
const TMP = mkdtempSync(join(tmpdir(), 'delta-peft-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

/** A plugin without training: the methods' parameters set to seeded random values. */
function makePlugin(name: string, dir: string, task: Task, raw: unknown, seed: number, labels?: string[]): Plugin {
  return seededPlugin(join(TMP, `${name}.delta`), dir, task, raw, seed, { labels });
}

function readAdapter(dir: string): {
  config: Record<string, unknown>;
  configKeys: string[];
  keys: string[];
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
} {
  const text = readFileSync(join(dir, 'adapter_config.json'), 'utf8');
  const h = readSafetensorsHeader(join(dir, 'adapter_model.safetensors'));
  const tensors = new Map<string, HostTensor>();
  for (const [k, ref] of h.tensors)
    tensors.set(k, { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, readTensorBytes(ref)) });
  return {
    config: JSON.parse(text),
    configKeys: Object.keys(JSON.parse(text)),
    keys: [...tensors.keys()].sort(),
    tensors,
    metadata: h.metadata,
  };
}

let outN = 0;
const newOut = (): string => join(TMP, `out-${outN++}`);

async function logits(
  dir: string,
  task: Task,
  methods: DeltaConfig[],
  values: Record<string, HostTensor>,
  numLabels?: number,
): Promise<HostTensor> {
  const { model, applied } = loadWithDeltas(dir, { task, numLabels }, methods);
  const s = await openInline(evaluationGraph(model, applied.trainable), { device: 'cpu' });
  const ref = readReference(dir);
  const feeds: Record<string, HostTensor> = {};
  for (const n of model.inputs) feeds[n] = ref.get(n)!;
  for (const p of applied.params) feeds[p.value] = values[p.name];
  const out = await s.run(feeds);
  await s.release();
  return out.logits;
}

function assertSameTensors(got: Record<string, HostTensor>, want: Record<string, HostTensor>): void {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
  for (const k of Object.keys(want)) {
    assert.deepEqual(got[k].shape, want[k].shape, k);
    assert.deepEqual(
      Float32Array.from(got[k].data as Float32Array),
      Float32Array.from(want[k].data as Float32Array),
      k,
    );
  }
}

function checkFileBasics(dir: string): ReturnType<typeof readAdapter> {
  const a = readAdapter(dir);
  assert.deepEqual(readdirSync(dir).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
  assert.deepEqual(a.configKeys, [...a.configKeys].sort(), 'config keys sorted as json.dumps(sort_keys=True)');
  assert.deepEqual(a.metadata, { format: 'pt' });
  for (const [k, t] of a.tensors) assert.equal(t.dtype, 'float32', k);
  return a;
}

/** A copy of the bert fixture without its classifier: the plugin's head is then created, trained and exported. */
function headlessBert(): string {
  const dir = join(TMP, 'bert-headless');
  if (existsSync(dir)) return dir;
  mkdirSync(dir);
  for (const f of readdirSync(BERT))
    if (f.endsWith('.json') || f === 'reference.safetensors') copyFileSync(join(BERT, f), join(dir, f));
  const h = readSafetensorsHeader(join(BERT, 'model.safetensors'));
  const t: Record<string, HostTensor> = {};
  for (const [k, ref] of h.tensors)
    if (!k.startsWith('classifier.'))
      t[k] = { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, readTensorBytes(ref)) };
  writeSafetensors(join(dir, 'model.safetensors'), t, { format: 'pt' });
  return dir;
}

const loraKeys = (pre: string, layers: number[], mods: string[]): string[] =>
  layers.flatMap((l) =>
    mods.flatMap((m) => ['A', 'B'].map((ab) => `base_model.model.${pre}${l}.${m}.lora_${ab}.weight`)),
  );

describe('PEFT export: files, keys and config as save_pretrained writes them', () => {
  test('LoRA on bert (SEQ_CLS): lora_A/lora_B per module, the classifier in modules_to_save', () => {
    const plugin = makePlugin('bert-lora', BERT, 'classification', { method: 'lora', r: 4, alpha: 8 }, 1);
    const out = newOut();
    const { files } = exportPeft(plugin, BERT, out);
    assert.deepEqual(files, [join(out, 'adapter_config.json'), join(out, 'adapter_model.safetensors')]);
    const a = checkFileBasics(out);
    assert.deepEqual(
      a.keys,
      [
        ...loraKeys('bert.encoder.layer.', [0, 1], ['attention.self.query', 'attention.self.value']),
        'base_model.model.classifier.bias',
        'base_model.model.classifier.weight',
      ].sort(),
    );
    assert.deepEqual(
      a.tensors.get('base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight')!.shape,
      [4, 32],
    );
    assert.deepEqual(
      a.tensors.get('base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight')!.shape,
      [32, 4],
    );
    assert.deepEqual(
      a.tensors.get('base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight')!.data,
      plugin.tensors['bert.encoder.layer.1.attention.self.value.lora_B'].data,
    );
    // The head was not trained: PEFT saves the copy of the folder's classifier.
    const ref = readSafetensorsHeader(join(BERT, 'model.safetensors')).tensors.get('classifier.weight')!;
    assert.deepEqual(
      a.tensors.get('base_model.model.classifier.weight')!.data,
      toFloat32(ref.dtype, readTensorBytes(ref)),
    );
    assert.deepEqual(a.config, {
      base_model_name_or_path: resolve(BERT),
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      lora_alpha: 8,
      lora_dropout: 0,
      modules_to_save: ['classifier', 'score'],
      peft_type: 'LORA',
      r: 4,
      revision: null,
      target_modules: ['query', 'value'],
      task_type: 'SEQ_CLS',
    });
  });

  test('LoRA on llama (CAUSAL_LM): grouped-query v_proj, no modules_to_save', () => {
    const plugin = makePlugin('llama-lora', LLAMA, 'causal-lm', { method: 'lora', r: 4, alpha: 16, dropout: 0.05 }, 2);
    const out = newOut();
    exportPeft(plugin, LLAMA, out);
    const a = checkFileBasics(out);
    assert.deepEqual(a.keys, loraKeys('model.layers.', [0, 1], ['self_attn.q_proj', 'self_attn.v_proj']).sort());
    assert.deepEqual(a.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!.shape, [32, 4]);
    assert.deepEqual(a.tensors.get('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')!.shape, [16, 4]);
    assert.deepEqual(a.config, {
      base_model_name_or_path: resolve(LLAMA),
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      lora_alpha: 16,
      lora_dropout: 0.05,
      modules_to_save: null,
      peft_type: 'LORA',
      r: 4,
      revision: null,
      target_modules: ['q_proj', 'v_proj'],
      task_type: 'CAUSAL_LM',
    });
  });

  test('LoRA on gpt2: Conv1D c_attn with fan_in_fan_out, lora_A [r, in] and lora_B [out, r]; rsLoRA writes use_rslora', () => {
    const plugin = makePlugin('gpt2-lora', GPT2, 'causal-lm', { method: 'lora', r: 4, alpha: 8, rslora: true }, 3);
    const out = newOut();
    exportPeft(plugin, GPT2, out, { baseModelNameOrPath: 'gpt2' });
    const a = checkFileBasics(out);
    assert.deepEqual(a.keys, loraKeys('transformer.h.', [0, 1], ['attn.c_attn']).sort());
    assert.deepEqual(a.tensors.get('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight')!.shape, [4, 32]);
    assert.deepEqual(a.tensors.get('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight')!.shape, [96, 4]);
    assert.deepEqual(a.config, {
      base_model_name_or_path: 'gpt2',
      bias: 'none',
      fan_in_fan_out: true,
      inference_mode: true,
      init_lora_weights: true,
      lora_alpha: 8,
      lora_dropout: 0,
      modules_to_save: null,
      peft_type: 'LORA',
      r: 4,
      revision: null,
      target_modules: ['c_attn'],
      task_type: 'CAUSAL_LM',
      use_rslora: true,
    });
  });

  test('(IA)³ on bert: ia3_l columns for keys and values, rows for feed-forward inputs', () => {
    const plugin = makePlugin('bert-ia3', BERT, 'classification', { method: 'ia3' }, 4);
    const out = newOut();
    exportPeft(plugin, BERT, out);
    const a = checkFileBasics(out);
    const mods = ['attention.self.key', 'attention.self.value', 'attention.output.dense', 'output.dense'];
    assert.deepEqual(
      a.keys,
      [
        ...[0, 1].flatMap((l) => mods.map((m) => `base_model.model.bert.encoder.layer.${l}.${m}.ia3_l`)),
        'base_model.model.classifier.bias',
        'base_model.model.classifier.weight',
      ].sort(),
    );
    const shape = (m: string): number[] => a.tensors.get(`base_model.model.bert.encoder.layer.1.${m}.ia3_l`)!.shape;
    assert.deepEqual(
      [
        shape('attention.self.key'),
        shape('attention.self.value'),
        shape('attention.output.dense'),
        shape('output.dense'),
      ],
      [
        [32, 1],
        [32, 1],
        [1, 32],
        [1, 64],
      ],
    );
    assert.deepEqual(a.config, {
      base_model_name_or_path: resolve(BERT),
      fan_in_fan_out: false,
      feedforward_modules: ['output.dense'],
      inference_mode: true,
      init_ia3_weights: true,
      modules_to_save: ['classifier', 'score'],
      peft_type: 'IA3',
      revision: null,
      target_modules: ['key', 'output.dense', 'value'],
      task_type: 'SEQ_CLS',
    });
  });

  test('prompt tuning on llama and bert: prompt_embeddings, and base_model.<head> for SEQ_CLS', () => {
    const plugin = makePlugin('llama-prompt', LLAMA, 'causal-lm', { method: 'soft_prompt', soft_token_num: 3 }, 5);
    const out = newOut();
    exportPeft(plugin, LLAMA, out);
    const a = checkFileBasics(out);
    assert.deepEqual(a.keys, ['prompt_embeddings']);
    assert.deepEqual(a.tensors.get('prompt_embeddings')!.shape, [3, 32]);
    assert.deepEqual(a.tensors.get('prompt_embeddings')!.data, plugin.tensors['soft_prompt.embedding'].data);
    assert.deepEqual(a.config, {
      base_model_name_or_path: resolve(LLAMA),
      inference_mode: true,
      num_attention_heads: 4,
      num_layers: 2,
      num_transformer_submodules: 1,
      num_virtual_tokens: 3,
      peft_type: 'PROMPT_TUNING',
      prompt_tuning_init: 'RANDOM',
      prompt_tuning_init_text: null,
      revision: null,
      task_type: 'CAUSAL_LM',
      token_dim: 32,
      tokenizer_name_or_path: null,
    });
    const cls = makePlugin('bert-prompt', BERT, 'classification', { method: 'soft_prompt', soft_token_num: 2 }, 6);
    const out2 = newOut();
    exportPeft(cls, BERT, out2);
    const b = checkFileBasics(out2);
    assert.deepEqual(b.keys, ['base_model.classifier.bias', 'base_model.classifier.weight', 'prompt_embeddings']);
    assert.equal(b.config.task_type, 'SEQ_CLS');
    assert.ok(!('modules_to_save' in b.config), 'PEFT 0.6 prompt-learning configs have no modules_to_save');
  });

  test('prefix tuning on llama: the projected prefixes as a prefix_projection=false table, per key/value head; same logits after import', async () => {
    const plugin = makePlugin(
      'llama-prefix',
      LLAMA,
      'causal-lm',
      { method: 'prefix', prefix_token_num: 2, mid_dim: 8 },
      7,
    );
    const out = newOut();
    exportPeft(plugin, LLAMA, out);
    const a = checkFileBasics(out);
    assert.deepEqual(a.keys, ['prompt_embeddings']);
    const emb = a.tensors.get('prompt_embeddings')!;
    assert.deepEqual(emb.shape, [2, 2 * 2 * 2 * 8]); // layers × (key, value) × kv heads × head dim
    const projected = projectPrefix((n) => ({
      data: plugin.tensors[n].data as Float32Array,
      shape: plugin.tensors[n].shape,
    }));
    assert.deepEqual(emb.data, projected.data);
    assert.deepEqual(a.config, {
      base_model_name_or_path: resolve(LLAMA),
      encoder_hidden_size: 16,
      inference_mode: true,
      num_attention_heads: 2,
      num_layers: 2,
      num_transformer_submodules: 1,
      num_virtual_tokens: 2,
      peft_type: 'PREFIX_TUNING',
      prefix_projection: false,
      revision: null,
      task_type: 'CAUSAL_LM',
      token_dim: 16,
    });
    // Imported, the table becomes the prefixes themselves (no MLP): the model computes the same.
    const imp = importPeft(out, LLAMA);
    assert.deepEqual(imp.meta.methods, [
      { method: 'prefix', prefix_token_num: 2, mid_dim: 512, reparameterize: false },
    ]);
    assert.deepEqual(imp.tensors['prefix.key_values'].shape, [2, 2, 2, 2, 8]);
    const want = await logits(LLAMA, 'causal-lm', plugin.meta.methods, plugin.tensors);
    const got = await logits(LLAMA, 'causal-lm', imp.meta.methods, imp.tensors);
    assert.ok(relErr(got, want) < 1e-5, `logits relative error ${relErr(got, want)}`);
    // And back out again: the same table.
    const again = newOut();
    writePlugin(join(TMP, 'llama-prefix-imported.delta'), imp.meta, imp.tensors);
    exportPeft(readPlugin(join(TMP, 'llama-prefix-imported.delta')), LLAMA, again);
    assert.deepEqual(readAdapter(again).tensors.get('prompt_embeddings')!.data, emb.data);
  });
});

describe('PEFT LoRA round trip: plugin → PEFT folder → importPeft', () => {
  const cases: {
    name: string;
    dir: () => string;
    task: Task;
    raw: unknown;
    labels?: string[];
    headCreated: boolean;
  }[] = [
    {
      name: 'bert (a created classifier head)',
      dir: headlessBert,
      task: 'classification',
      raw: { method: 'lora', r: 4, alpha: 8 },
      labels: ['neg', 'neu', 'pos'],
      headCreated: true,
    },
    {
      name: "bert (the folder's head)",
      dir: () => BERT,
      task: 'classification',
      raw: { method: 'lora', r: 2, alpha: 4, target_modules: ['query', 'key', 'value'] },
      headCreated: false,
    },
    {
      name: 'llama',
      dir: () => LLAMA,
      task: 'causal-lm',
      raw: { method: 'lora', r: 4, alpha: 8, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
      headCreated: false,
    },
    {
      name: 'gpt2',
      dir: () => GPT2,
      task: 'causal-lm',
      raw: { method: 'lora', r: 4, alpha: 8, exclude_modules: ['h.1'] },
      headCreated: false,
    },
  ];
  for (const c of cases) {
    test(`${c.name}: identical tensors and logits`, async () => {
      const dir = c.dir();
      const plugin = makePlugin(`rt-${basename(dir)}-${c.headCreated}`, dir, c.task, c.raw, 11, c.labels);
      if (c.headCreated) assert.ok(plugin.tensors['classifier.weight'], 'the plugin carries its created head');
      const out = newOut();
      exportPeft(plugin, dir, out);
      const imp = importPeft(out, dir, { labels: c.labels });
      assertSameTensors(imp.tensors, plugin.tensors);
      assert.equal(imp.meta.task, c.task);
      assert.equal(imp.meta.base.fingerprint, plugin.meta.base.fingerprint);
      assert.deepEqual(
        imp.meta.labels,
        c.task === 'classification' ? (c.labels ?? ['LABEL_0', 'LABEL_1', 'LABEL_2']) : undefined,
      );
      const m = imp.meta.methods[0];
      assert.deepEqual(
        [m.method, m.r, m.alpha, m.rslora],
        ['lora', plugin.meta.methods[0].r, plugin.meta.methods[0].alpha, false],
      );
      const want = await logits(dir, c.task, plugin.meta.methods, plugin.tensors, c.labels?.length);
      const got = await logits(dir, c.task, imp.meta.methods, imp.tensors, c.labels?.length);
      assert.deepEqual(got.data, want.data);
      // The delta matters: the base model's logits differ.
      if (!c.headCreated) assert.ok(relErr(want, readReference(dir).get('logits')!) > 1e-3);
    });
  }

  test('(IA)³ on bert round-trips too', () => {
    const plugin = makePlugin('rt-bert-ia3', BERT, 'classification', { method: 'ia3' }, 12);
    const out = newOut();
    exportPeft(plugin, BERT, out);
    const imp = importPeft(out, BERT);
    assertSameTensors(imp.tensors, plugin.tensors);
  });

  test('keys with the adapter name (".default") and without "base_model.model." are read the same', () => {
    const plugin = makePlugin('rt-llama-named', LLAMA, 'causal-lm', { method: 'lora', r: 4, alpha: 8 }, 13);
    const out = newOut();
    exportPeft(plugin, LLAMA, out);
    const a = readAdapter(out);
    const renamed = newOut();
    mkdirSync(renamed);
    copyFileSync(join(out, 'adapter_config.json'), join(renamed, 'adapter_config.json'));
    const t: Record<string, HostTensor> = {};
    for (const [k, v] of a.tensors)
      t[k.replace('base_model.model.', '').replace(/\.lora_(A|B)\.weight$/, '.lora_$1.default.weight')] = v;
    assert.ok(Object.keys(t).every((k) => k.includes('.default.') && !k.startsWith('base_model')));
    writeSafetensors(join(renamed, 'adapter_model.safetensors'), t, { format: 'pt' });
    assertSameTensors(importPeft(renamed, LLAMA).tensors, plugin.tensors);
  });
});

describe('PEFT refusals', () => {
  const llamaPlugin = (): Plugin => makePlugin('bad-llama', LLAMA, 'causal-lm', { method: 'lora', r: 4, alpha: 8 }, 21);
  /** An exported llama LoRA folder with its config or tensors changed. */
  function variant(edit: {
    config?: (c: Record<string, unknown>) => void;
    tensors?: (t: Record<string, HostTensor>) => void;
  }): string {
    const out = newOut();
    exportPeft(llamaPlugin(), LLAMA, out);
    const a = readAdapter(out);
    if (edit.config) {
      edit.config(a.config);
      writeFileSync(join(out, 'adapter_config.json'), JSON.stringify(a.config));
    }
    if (edit.tensors) {
      const t = Object.fromEntries(a.tensors);
      edit.tensors(t);
      writeSafetensors(join(out, 'adapter_model.safetensors'), t, { format: 'pt' });
    }
    return out;
  }

  test('an unknown peft_type names the type found and the supported ones', () => {
    const dir = variant({
      config: (c) => {
        c.peft_type = 'LOHA';
      },
    });
    assert.throws(
      () => importPeft(dir, LLAMA),
      /adapter_config\.json: peft_type "LOHA" is not supported; Delta Studio imports LORA, IA3, PROMPT_TUNING, PREFIX_TUNING adapters/,
    );
  });

  test('a missing tensor names its key and the file', () => {
    const key = 'base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight';
    const dir = variant({
      tensors: (t) => {
        delete t[key];
      },
    });
    assert.throws(
      () => importPeft(dir, LLAMA),
      (e: Error) => {
        assert.match(
          e.message,
          /adapter_model\.safetensors: "base_model\.model\.model\.layers\.1\.self_attn\.v_proj\.lora_B\.weight" is missing: target_modules \["q_proj","v_proj"\] selects/,
        );
        return true;
      },
    );
  });

  test('a trained embedding in modules_to_save is refused, not dropped', () => {
    const dir = variant({
      tensors: (t) => {
        t['base_model.model.model.embed_tokens.weight'] = {
          dtype: 'float32',
          shape: [326, 32],
          data: new Float32Array(326 * 32).fill(0.5),
        };
      },
    });
    assert.throws(
      () => importPeft(dir, LLAMA),
      /"base_model\.model\.model\.embed_tokens\.weight" is a trained model\.embed_tokens\.weight \(modules_to_save\); Delta Studio imports trained task heads only/,
    );
  });

  test('a missing config key is named', () => {
    for (const key of ['lora_alpha', 'r', 'target_modules']) {
      const dir = variant({
        config: (c) => {
          delete c[key];
        },
      });
      assert.throws(
        () => importPeft(dir, LLAMA),
        new RegExp(`adapter_config\\.json: "${key}" is missing; a LORA adapter_config\\.json needs it`),
      );
    }
  });

  test('a folder with only adapter_model.bin is refused: pickle', () => {
    const dir = join(TMP, 'bin-only');
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'] }),
    );
    writeFileSync(join(dir, 'adapter_model.bin'), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
    assert.throws(
      () => importPeft(dir, LLAMA),
      /adapter_model\.bin: only the pickle format \(torch\.save\) is here, and unpickling can run arbitrary code/,
    );
  });

  test('an existing non-empty folder is refused unless overwrite', () => {
    const out = newOut();
    mkdirSync(out);
    writeFileSync(join(out, 'notes.txt'), 'mine');
    const plugin = llamaPlugin();
    assert.throws(
      () => exportPeft(plugin, LLAMA, out),
      /already exists and is not empty; choose a new folder, or overwrite it \(overwrite: true\)/,
    );
    assert.deepEqual(readdirSync(out), ['notes.txt']);
    exportPeft(plugin, LLAMA, out, { overwrite: true });
    assert.deepEqual(readdirSync(out).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
  });

  test('methods PEFT cannot hold are refused, and nothing is left behind', () => {
    const before = readdirSync(TMP).filter((f) => f.includes('.peft-'));
    const houlsby = makePlugin('bad-adapter', BERT, 'classification', { method: 'adapter', bottleneck_dim: 8 }, 22);
    assert.throws(
      () => exportPeft(houlsby, BERT, newOut()),
      /adapter \(Adapter \(Houlsby, sequential\)\) has no PEFT equivalent; export 'merged' or 'onnx' instead/,
    );
    const combo = makePlugin(
      'bad-combo',
      LLAMA,
      'causal-lm',
      {
        deltas: [
          { method: 'lora', r: 2 },
          { method: 'soft_prompt', soft_token_num: 2 },
        ],
      },
      23,
    );
    assert.throws(
      () => exportPeft(combo, LLAMA, newOut()),
      /combines lora \(LoRA\) and soft_prompt \(Soft prompt \(prompt tuning\)\), but a PEFT adapter holds one method/,
    );
    const t5 = makePlugin(
      'bad-t5-prefix',
      join(FIX, 't5'),
      'seq2seq',
      { method: 'prefix', prefix_token_num: 2, mid_dim: 8 },
      24,
    );
    assert.throws(() => exportPeft(t5, join(FIX, 't5'), newOut()), /prefix on t5 \(seq2seq\): .*export 'onnx' instead/);
    assert.throws(() => exportPeft(llamaPlugin(), BERT, newOut()), /trained on another base model/);
    assert.deepEqual(
      readdirSync(TMP).filter((f) => f.includes('.peft-')),
      before,
    );
  });
});
