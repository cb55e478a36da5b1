// Key names of every export are those of the class a user loads, whatever prefix convention the checkpoint used.
//
// transformers: every task class keeps its backbone under base_model_prefix (GPT2ForSequenceClassification.transformer,
// BertForSequenceClassification.bert, RobertaForSequenceClassification.roberta, LlamaForCausalLM.model), and
// from_pretrained adds that prefix to a checkpoint saved from the bare backbone (modeling_utils._load_pretrained_model,
// loading_task_model_from_base_state_dict; v5: core_model_loading.rename_source_key). T5ForConditionalGeneration has no
// such attribute: its names are the checkpoint's. PEFT loads adapter keys onto the wrapped class's own names
// (peft/utils/save_and_load.py set_peft_model_state_dict: load_state_dict(strict=False)); a key without the prefix
// only shows as "Found missing adapter keys" (peft/peft_model.py) and the adapter is silently not used.
//
// The fixtures here are the committed ones saved again without the backbone prefix (tests/support/checkpoints.ts), as
// the Hub's gpt2 files, BertModel, RobertaModel and LlamaModel save them.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exportMerged } from '../native/export/merged.js';
import { exportPeft, importPeft } from '../native/export/peft.js';
import { loadWithDeltas } from '../native/delta/index.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../native/onnx/safetensors.js';
import { readModelFolder } from '../native/models/folder.js';
import type { Task } from '../native/models/index.js';
import { modelFingerprint, readPlugin, type Plugin } from '../native/plugins/format.js';
import { openInline } from '../native/runtime/host.js';
import { evaluationGraph } from '../native/train/trainer.js';
import { readReference } from './support/reference.js';
import { BACKBONE_PREFIX, deriveCheckpoint, withoutBackbonePrefix } from './support/checkpoints.js';
import { seededPlugin } from './support/plugins.js';

const FIX = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const TMP = mkdtempSync(join(tmpdir(), 'ds-names-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

const bare = (family: string): string => withoutBackbonePrefix(FIX, family, join(TMP, `${family}-bare`));

let made = 0;
/** A plugin with seeded values: the same names and seed give the same tensors on either layout of a checkpoint. */
function makePlugin(dir: string, task: Task, raw: unknown, seed: number, labels?: string[]): Plugin {
  return seededPlugin(join(TMP, `plugin-${made++}.delta`), dir, task, raw, seed, { labels });
}

function adapter(dir: string): { config: Record<string, unknown>; tensors: Map<string, Uint8Array> } {
  const h = readSafetensorsHeader(join(dir, 'adapter_model.safetensors'));
  return {
    config: JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>,
    tensors: new Map([...h.tensors].map(([k, ref]) => [k, readTensorBytes(ref)])),
  };
}

function mergedWeights(dir: string): Map<string, Uint8Array> {
  return new Map([...readModelFolder(dir).weights].map(([k, ref]) => [k, readTensorBytes(ref)]));
}

async function logits(
  dir: string,
  plugin: { meta: Pick<Plugin['meta'], 'task' | 'labels' | 'methods'>; tensors: Record<string, HostTensor> },
) {
  const { model, applied } = loadWithDeltas(
    dir,
    { task: plugin.meta.task, numLabels: plugin.meta.labels?.length },
    plugin.meta.methods,
  );
  const s = await openInline(evaluationGraph(model, applied.trainable), { device: 'cpu' });
  const ref = readReference(dir);
  const feeds: Record<string, HostTensor> = {};
  for (const n of model.inputs) feeds[n] = ref.get(n)!;
  for (const p of applied.params) feeds[p.value] = plugin.tensors[p.name];
  const out = await s.run(feeds, ['logits']);
  await s.release();
  return out.logits;
}

// Each family's task classes, with the heads outside the backbone prefix.
const CASES: { family: string; task: Task; labels?: string[]; heads: string[] }[] = [
  { family: 'bert', task: 'classification', labels: ['a', 'b', 'c'], heads: ['classifier'] },
  { family: 'roberta', task: 'classification', labels: ['a', 'b'], heads: ['classifier'] },
  { family: 'gpt2', task: 'classification', labels: ['a', 'b'], heads: ['score'] },
  { family: 'gpt2', task: 'causal-lm', heads: ['lm_head'] },
  { family: 'llama', task: 'classification', labels: ['a', 'b'], heads: ['score'] },
  { family: 'llama', task: 'causal-lm', heads: ['lm_head'] },
  { family: 'qwen2', task: 'causal-lm', heads: ['lm_head'] },
];

describe("a checkpoint saved without the backbone prefix is read, trained and exported with the class's names", () => {
  for (const c of CASES) {
    const label = `${c.family} ${c.task}`;
    test(`${label}: weights, PEFT keys, modules_to_save and merged names equal the prefixed checkpoint's`, () => {
      const orig = join(FIX, c.family),
        dir = bare(c.family);
      const pre = BACKBONE_PREFIX[c.family];
      // The file says h.0.…; the folder as read says transformer.h.0.…, pointing at the file's own tensor.
      const o = readModelFolder(orig),
        b = readModelFolder(dir);
      assert.deepEqual([...b.weights.keys()].sort(), [...o.weights.keys()].sort());
      for (const [name, ref] of b.weights) assert.equal(pre + ref.name, name.startsWith(pre) ? name : pre + name);
      assert.equal(b.addedPrefix, pre);

      const raw = { method: 'lora', r: 2, alpha: 4 };
      const pb = makePlugin(dir, c.task, raw, 7, c.labels),
        po = makePlugin(orig, c.task, raw, 7, c.labels);
      assert.deepEqual(Object.keys(pb.tensors).sort(), Object.keys(po.tensors).sort());

      const outB = join(TMP, `peft-${c.family}-${c.task}-bare`),
        outO = join(TMP, `peft-${c.family}-${c.task}`);
      exportPeft(pb, dir, outB);
      exportPeft(po, orig, outO);
      const ab = adapter(outB),
        ao = adapter(outO);
      assert.deepEqual([...ab.tensors.keys()].sort(), [...ao.tensors.keys()].sort());
      for (const [k, bytes] of ab.tensors) assert.deepEqual(bytes, ao.tensors.get(k), k);
      for (const k of ab.tensors.keys())
        assert.ok(
          k.startsWith(`base_model.model.${pre}`) || c.heads.some((h) => k.startsWith(`base_model.model.${h}.`)),
          `${k}: neither under ${pre} nor a head`,
        );
      assert.ok([...ab.tensors.keys()].some((k) => k.includes('.lora_A.')));
      assert.deepEqual({ ...ab.config, base_model_name_or_path: '' }, { ...ao.config, base_model_name_or_path: '' });

      const mb = exportMerged(pb, dir, join(TMP, `merged-${c.family}-${c.task}-bare`), { dtype: 'float32' });
      const mo = exportMerged(po, orig, join(TMP, `merged-${c.family}-${c.task}`), { dtype: 'float32' });
      const wb = mergedWeights(mb.dir),
        wo = mergedWeights(mo.dir);
      assert.deepEqual([...wb.keys()].sort(), [...wo.keys()].sort());
      for (const [k, bytes] of wb) assert.deepEqual(bytes, wo.get(k), k);
      for (const k of wb.keys())
        assert.ok(k.startsWith(pre) || c.heads.some((h) => k.startsWith(`${h}.`)), `merged ${k}`);
    });
  }

  test('GPT-2 as the Hub stores it: GPT2ForSequenceClassification keys, as PEFT expects them', () => {
    const dir = bare('gpt2');
    const plugin = makePlugin(dir, 'classification', { method: 'lora', r: 2, alpha: 4 }, 3, ['neg', 'pos']);
    const out = join(TMP, 'peft-gpt2-hub');
    exportPeft(plugin, dir, out);
    const a = adapter(out);
    assert.deepEqual(
      [...a.tensors.keys()].sort(),
      [
        'base_model.model.score.weight',
        ...[0, 1].flatMap((l) =>
          ['A', 'B'].map((x) => `base_model.model.transformer.h.${l}.attn.c_attn.lora_${x}.weight`),
        ),
      ].sort(),
    );
    assert.deepEqual(a.config.modules_to_save, ['classifier', 'score']);
    assert.deepEqual(a.config.target_modules, ['c_attn']);
  });

  test('BERT saved by BertModel with no pooler or head: the new pooler is modules_to_save under bert.', () => {
    const dir = deriveCheckpoint(join(FIX, 'bert'), join(TMP, 'bert-bare-headless'), (n) =>
      n.startsWith('classifier.') || n.startsWith('bert.pooler.') ? undefined : n.slice('bert.'.length),
    );
    const plugin = makePlugin(dir, 'classification', { method: 'lora', r: 2, alpha: 4 }, 4, ['x', 'y']);
    assert.ok(plugin.tensors['bert.pooler.dense.weight'], 'the plugin trains the created pooler');
    const out = join(TMP, 'peft-bert-bare-headless');
    exportPeft(plugin, dir, out);
    const a = adapter(out);
    for (const k of [
      'base_model.model.bert.pooler.dense.weight',
      'base_model.model.bert.pooler.dense.bias',
      'base_model.model.classifier.weight',
      'base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight',
    ])
      assert.ok(a.tensors.has(k), k);
    assert.deepEqual(a.config.modules_to_save, ['classifier', 'score', 'bert.pooler.dense']);
    // Merged: the created pooler and head are written under the class's names too.
    const m = exportMerged(plugin, dir, join(TMP, 'merged-bert-bare-headless'), { dtype: 'float32' });
    const names = [...mergedWeights(m.dir).keys()];
    assert.ok(names.includes('bert.pooler.dense.weight') && names.includes('classifier.weight'), names.join(', '));
    assert.ok(
      names.every((n) => n.startsWith('bert.') || n.startsWith('classifier.')),
      names.join(', '),
    );
  });

  test('T5ForConditionalGeneration has no backbone attribute: keys stay as the checkpoint names them', () => {
    const dir = join(FIX, 't5');
    const plugin = makePlugin(dir, 'seq2seq', { method: 'lora', r: 2, alpha: 4 }, 5);
    const out = join(TMP, 'peft-t5');
    exportPeft(plugin, dir, out);
    const keys = [...adapter(out).tensors.keys()];
    assert.ok(keys.includes('base_model.model.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight'), keys.join());
    assert.ok(keys.includes('base_model.model.decoder.block.1.layer.0.SelfAttention.v.lora_B.weight'), keys.join());
    assert.ok(keys.every((k) => !k.includes('transformer.')));
  });

  for (const family of ['gpt2', 'llama', 'bert']) {
    test(`import-peft maps an adapter for the class back onto the ${family} checkpoint without the prefix`, async () => {
      const orig = join(FIX, family),
        dir = bare(family);
      const task: Task = family === 'bert' ? 'classification' : 'causal-lm';
      const plugin = makePlugin(orig, task, { method: 'lora', r: 2, alpha: 4 }, 9);
      const out = join(TMP, `peft-import-${family}`);
      exportPeft(plugin, orig, out);
      const imp = importPeft(out, dir);
      assert.deepEqual(Object.keys(imp.tensors).sort(), Object.keys(plugin.tensors).sort());
      for (const [k, t] of Object.entries(plugin.tensors)) assert.deepEqual(imp.tensors[k].data, t.data, k);
      assert.equal(imp.meta.base.fingerprint, modelFingerprint(dir));
      // Same weights either way: the same logits on both layouts.
      assert.deepEqual((await logits(dir, imp)).data, (await logits(orig, plugin)).data);
    });
  }

  test('a plugin written with the checkpoint file names (before class names) reads with the class names', () => {
    const dir = bare('gpt2');
    const plugin = makePlugin(dir, 'causal-lm', { method: 'lora', r: 2, alpha: 4 }, 6);
    const file = join(TMP, 'old-names.delta');
    const h = readSafetensorsHeader(plugin.file);
    writeSafetensors(
      file,
      Object.fromEntries(
        [...h.tensors].map(([k, ref]) => [
          k.replace(/^transformer\./, ''),
          { dtype: ref.dtype, shape: ref.shape, data: readTensorBytes(ref) },
        ]),
      ),
      h.metadata,
    );
    assert.ok(readSafetensorsHeader(file).tensors.has('h.0.attn.c_attn.lora_A'));
    const old = readPlugin(file);
    assert.deepEqual(Object.keys(old.tensors).sort(), Object.keys(plugin.tensors).sort());
    exportPeft(old, dir, join(TMP, 'peft-old-names'));
    assert.ok(
      adapter(join(TMP, 'peft-old-names')).tensors.has('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight'),
    );
  });

  test('the same tensor under both names is refused, naming both', () => {
    const dir = deriveCheckpoint(join(FIX, 'gpt2'), join(TMP, 'gpt2-twice'), (n) => n);
    const h = readSafetensorsHeader(join(FIX, 'gpt2', 'model.safetensors'));
    const t: Record<string, { dtype: 'float16'; shape: number[]; data: Uint8Array }> = {};
    for (const [k, ref] of h.tensors) t[k] = { dtype: 'float16', shape: ref.shape, data: readTensorBytes(ref) };
    const wte = t['transformer.wte.weight'];
    t['wte.weight'] = wte;
    writeSafetensors(join(dir, 'model.safetensors'), t, { format: 'pt' });
    assert.throws(
      () => readModelFolder(dir),
      (e: Error) => e.message.includes('"transformer.wte.weight" and "wte.weight"'),
    );
  });
});
