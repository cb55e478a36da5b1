// Exports of a plugin: a merged Hugging Face folder (LoRA, (IA)³, BitFit folded into the weights) and an inference
// ONNX model (baked or with the delta as inputs), each compared with what the engine computes for base + plugin.
import assert from 'node:assert/strict';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { exportMerged, integralFloatPaths } from '../native/export/merged.js';
import { exportOnnx } from '../native/export/onnx.js';
import { loadWithDeltas, parseDeltaConfig } from '../native/delta/index.js';
import { toFloat32, type DType } from '../native/onnx/dtype.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../native/onnx/safetensors.js';
import { readModelFolder } from '../native/models/folder.js';
import { loadModel, type Task } from '../native/models/index.js';
import { modelFingerprint, readPlugin, writePlugin, type Plugin } from '../native/plugins/format.js';
import { openInline } from '../native/runtime/host.js';
import { evaluationGraph } from '../native/train/trainer.js';
import { Rng } from '../native/rng.js';
import { readReference } from './support/reference.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const TASK: Record<string, Task> = { bert: 'classification', gpt2: 'causal-lm', llama: 'causal-lm' };
const LABELS = ['negative', 'positive'];

let tmp = '';
before(() => {
  tmp = mkdtempSync(join(os.tmpdir(), 'ds-export-'));
});
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

let made = 0;
/** A plugin with random non-trivial delta values (no training), written and read back as a .delta file. */
function makePlugin(name: string, config: unknown, seed: number, dir = join(FIXTURES, name)): Plugin {
  const task = TASK[name];
  const labels = task === 'classification' ? LABELS : undefined;
  const methods = parseDeltaConfig(config);
  const { model, applied } = loadWithDeltas(dir, { task, numLabels: labels?.length }, methods);
  const rng = new Rng(seed);
  const tensors: Record<string, HostTensor> = {};
  for (const p of applied.params) {
    const init = applied.initial[p.value];
    const x = init.data as Float32Array;
    const data = new Float32Array(x.length);
    for (let i = 0; i < data.length; i++) {
      const r = rng.normal();
      data[i] = p.name.endsWith('.ia3_l')
        ? 1 + 0.3 * r
        : p.existing
          ? x[i] + 0.05 * r
          : p.name.startsWith('prefix.')
            ? r
            : 0.2 * r;
    }
    tensors[p.name] = { dtype: 'float32', shape: init.shape, data };
  }
  const file = join(tmp, `plugin-${made++}.delta`);
  writePlugin(
    file,
    {
      methods,
      task,
      labels,
      base: { fingerprint: modelFingerprint(dir), modelType: model.modelType, name },
      metrics: {},
      createdAt: '2025-01-01T00:00:00Z',
      maxLength: 16,
    },
    tensors,
  );
  return readPlugin(file);
}

/** The reference batch (2 rows, right-padded); labels made to fit the task. */
function batch(name: string): Record<string, HostTensor> {
  const ref = readReference(join(FIXTURES, name));
  const out: Record<string, HostTensor> = {};
  for (const k of ['input_ids', 'attention_mask', 'token_type_ids']) if (ref.has(k)) out[k] = ref.get(k)!;
  out.labels =
    TASK[name] === 'classification'
      ? { dtype: 'int64', shape: [2], data: BigInt64Array.of(0n, 1n) }
      : ref.get('input_ids')!;
  return out;
}

const withoutLabels = (f: Record<string, HostTensor>): Record<string, HostTensor> =>
  Object.fromEntries(Object.entries(f).filter(([k]) => k !== 'labels'));

/** The engine: the evaluation graph of base + the plugin's methods, fed the plugin's tensors. */
async function engineLogits(name: string, plugin: Plugin, dir = join(FIXTURES, name)): Promise<HostTensor> {
  const { model, applied } = loadWithDeltas(
    dir,
    { task: plugin.meta.task, numLabels: plugin.meta.labels?.length },
    plugin.meta.methods,
  );
  const s = await openInline(evaluationGraph(model, applied.trainable), { device: 'cpu' });
  const feeds: Record<string, HostTensor> = {};
  const b = batch(name);
  for (const n of model.inputs) feeds[n] = b[n];
  for (const p of applied.params) feeds[p.value] = plugin.tensors[p.name];
  const out = await s.run(feeds, ['logits']);
  await s.release();
  return out.logits;
}

/** A folder loaded by our own loader with no deltas. */
async function folderLogits(dir: string, name: string): Promise<HostTensor> {
  const model = loadModel(dir, { task: TASK[name] });
  const s = await openInline(evaluationGraph(model, []), { device: 'cpu' });
  const b = batch(name);
  const out = await s.run(Object.fromEntries(model.inputs.map((n) => [n, b[n]])), ['logits']);
  await s.release();
  return out.logits;
}

/** A plain onnxruntime-node session on the written file. */
async function ortRun(
  file: string,
  feeds: Record<string, HostTensor>,
): Promise<{ logits: HostTensor; inputNames: readonly string[]; outputNames: readonly string[] }> {
  const s = await ort.InferenceSession.create(file);
  const f: Record<string, ort.Tensor> = {};
  for (const n of s.inputNames) {
    assert.ok(feeds[n], `feed for ${n}`);
    f[n] = new ort.Tensor(feeds[n].dtype as ort.Tensor.Type, feeds[n].data as ort.Tensor.DataType, feeds[n].shape);
  }
  const out = await s.run(f);
  const r = {
    logits: { dtype: 'float32' as const, shape: [...out.logits.dims], data: out.logits.data as Float32Array },
    inputNames: s.inputNames,
    outputNames: s.outputNames,
  };
  await s.release();
  return r;
}

function maxDiff(a: HostTensor, b: HostTensor): number {
  assert.deepEqual(a.shape, b.shape);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(Number(a.data[i]) - Number(b.data[i])));
  return m;
}

function range(a: HostTensor): number {
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(Number(a.data[i])));
  return m;
}

const log = (s: string): void => {
  if (process.env.EXPORT_TEST_VERBOSE) console.log(s);
};

describe('merged Hugging Face folder', () => {
  const cases: [string, string, unknown][] = [
    ['bert', 'lora + new head', { method: 'lora', r: 4, alpha: 8 }],
    ['bert', '(IA)³ (square attention.output.dense scaled on its input)', { method: 'ia3' }],
    ['bert', 'BitFit (existing biases, norm biases folded)', { method: 'bitfit' }],
    [
      'llama',
      'lora + (IA)³ on the same modules',
      [{ method: 'lora', r: 4, alpha: 8, target_modules: ['q_proj', 'v_proj', 'down_proj'] }, { method: 'ia3' }],
    ],
    [
      'gpt2',
      'lora + (IA)³ on Conv1D',
      [{ method: 'lora', r: 4, alpha: 8, target_modules: ['c_attn', 'c_proj'] }, { method: 'ia3' }],
    ],
  ];
  for (const [name, what, config] of cases) {
    test(`${name}, ${what}: the merged folder gives base + plugin's logits`, async () => {
      const plugin = makePlugin(name, config, 7);
      const out = join(tmp, `merged-${name}-${made}`);
      const t0 = performance.now();
      const r = exportMerged(plugin, join(FIXTURES, name), out, { dtype: 'float32' });
      const ms = performance.now() - t0;
      assert.ok(r.merged.length > 0 || r.replaced.length > 0);
      const want = await engineLogits(name, plugin);
      const got = await folderLogits(out, name);
      const d = maxDiff(got, want);
      log(
        `merged ${name} ${what}: max |Δlogits| ${d.toExponential(2)} (logits up to ${range(want).toFixed(2)}), ${ms.toFixed(0)} ms, ${r.totalSize} bytes, merged ${r.merged.length}, replaced ${r.replaced.length}`,
      );
      assert.ok(d < 1e-4, `max logit difference ${d}`);
      // The delta is not a no-op (bert's base head has another number of labels).
      if (name !== 'bert') assert.ok(maxDiff(await folderLogits(join(FIXTURES, name), name), want) > 1e-3);
      const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      assert.deepEqual(cfg.architectures, [r.architecture]);
      assert.equal(cfg.torch_dtype, 'float32');
      assert.ok(
        existsSync(join(out, 'tokenizer.json')) &&
          existsSync(join(out, 'tokenizer_config.json')) &&
          existsSync(join(out, 'special_tokens_map.json')),
      );
      assert.ok(
        !existsSync(join(out, 'reference.safetensors')) && !readdirSync(out).some((f) => f.startsWith('delta-')),
      );
      if (name === 'bert') {
        assert.equal(cfg.architectures[0], 'BertForSequenceClassification');
        assert.deepEqual(cfg.id2label, { 0: 'negative', 1: 'positive' });
        assert.deepEqual(cfg.label2id, { negative: 0, positive: 1 });
        assert.equal(cfg.num_labels, 2);
        assert.deepEqual(
          readSafetensorsHeader(join(out, 'model.safetensors')).tensors.get('classifier.weight')!.shape,
          [2, 32],
        );
      }
      assert.deepEqual(
        readdirSync(tmp).filter((f) => f.startsWith('.')),
        [],
        'no temporary folder left',
      );
    });
  }

  test('sharding: small shards, an index that covers every tensor, total_size right', async () => {
    const plugin = makePlugin('llama', { method: 'lora', r: 4, alpha: 8 }, 3);
    const out = join(tmp, 'merged-sharded');
    const reports: number[] = [];
    const r = exportMerged(plugin, join(FIXTURES, 'llama'), out, {
      dtype: 'float32',
      shardBytes: 40_000,
      onProgress: (f) => reports.push(f),
    });
    assert.ok(r.weightFiles.length >= 2, `${r.weightFiles.length} shards`);
    assert.ok(
      reports.length >= 5 && reports.every((f, i) => f > 0 && f <= 1 && (i === 0 || f > reports[i - 1])),
      `progress rises: ${reports.join(', ')}`,
    );
    assert.equal(reports.at(-1), 1);
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
    const shards = readdirSync(out)
      .filter((f) => f.endsWith('.safetensors'))
      .sort();
    assert.deepEqual(
      shards,
      r.weightFiles.map(
        (_, i) =>
          `model-${String(i + 1).padStart(5, '0')}-of-${String(r.weightFiles.length).padStart(5, '0')}.safetensors`,
      ),
    );
    let total = 0;
    const seen = new Map<string, string>();
    for (const s of shards) {
      const h = readSafetensorsHeader(join(out, s));
      assert.equal(h.metadata.format, 'pt');
      for (const [n, t] of h.tensors) {
        seen.set(n, s);
        total += t.length;
      }
    }
    assert.deepEqual(Object.keys(index.weight_map).sort(), [...seen.keys()].sort());
    for (const [n, s] of seen) assert.equal(index.weight_map[n], s);
    assert.equal(index.metadata.total_size, total);
    assert.equal(r.totalSize, total);
    assert.equal(seen.size, readModelFolder(join(FIXTURES, 'llama')).weights.size);
    assert.ok(maxDiff(await folderLogits(out, 'llama'), await engineLogits('llama', plugin)) < 1e-4);
  });

  test("a folder saved without the backbone prefix (as GPT2Model saves) is written with the task class's names", async () => {
    const src = join(FIXTURES, 'gpt2');
    const bare = join(tmp, 'gpt2-bare');
    mkdirSync(bare);
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'])
      copyFileSync(join(src, f), join(bare, f));
    const tensors: Record<string, { dtype: DType; shape: number[]; data: Uint8Array }> = {};
    for (const [n, t] of readModelFolder(src).weights)
      tensors[n.replace(/^transformer\./, '')] = { dtype: t.dtype, shape: t.shape, data: readTensorBytes(t) };
    writeSafetensors(join(bare, 'model.safetensors'), tensors, { format: 'pt' });
    const plugin = makePlugin('gpt2', { method: 'lora', r: 4, alpha: 8 }, 9, bare);
    const out = join(tmp, 'merged-gpt2-bare');
    exportMerged(plugin, bare, out, { dtype: 'float32' });
    const names = [...readModelFolder(out).weights.keys()];
    assert.ok(names.length > 0 && names.every((n) => n.startsWith('transformer.')), names.join(', '));
    assert.ok(maxDiff(await folderLogits(out, 'gpt2'), await engineLogits('gpt2', plugin, bare)) < 1e-4);
  });

  test("dtype 'source': bf16 stays bf16, untouched weights byte for byte, merged ones rounded", async () => {
    const plugin = makePlugin('llama', { method: 'lora', r: 4, alpha: 8 }, 5);
    const out = join(tmp, 'merged-bf16');
    const r = exportMerged(plugin, join(FIXTURES, 'llama'), out);
    assert.equal(r.dtype, 'bfloat16');
    assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype, 'bfloat16');
    assert.ok(r.rounded.length > 0 && r.notes.some((n) => /rounded/.test(n)));
    const src = readModelFolder(join(FIXTURES, 'llama'));
    const dst = readModelFolder(out);
    for (const [n, t] of dst.weights) {
      assert.equal(t.dtype, 'bfloat16', n);
      if (!r.merged.includes(n))
        assert.deepEqual(readTensorBytes(t), readTensorBytes(src.weights.get(n)!), `${n} copied as stored`);
    }
    const want = await engineLogits('llama', plugin);
    const d = maxDiff(await folderLogits(out, 'llama'), want);
    log(`merged llama bf16: max |Δlogits| ${d.toExponential(2)} of ${range(want).toFixed(2)}`);
    assert.ok(d < 0.02 * range(want), `bf16 rounding moved logits by ${d}`);
    // Each rounded weight is the float32 export's, rounded to nearest even.
    const f32 = readModelFolder(
      exportMerged(plugin, join(FIXTURES, 'llama'), join(tmp, 'merged-bf16-f32'), { dtype: 'float32' }).dir,
    );
    for (const n of r.rounded) {
      const exact = toFloat32('float32', readTensorBytes(f32.weights.get(n)!));
      const got = toFloat32('bfloat16', readTensorBytes(dst.weights.get(n)!));
      for (let i = 0; i < exact.length; i++) {
        const ulp = 2 ** (Math.floor(Math.log2(Math.abs(exact[i]) || 1e-30)) - 7);
        assert.ok(Math.abs(got[i] - exact[i]) <= ulp / 2, `${n}[${i}]: ${got[i]} for ${exact[i]}`);
      }
    }
  });
});

describe('ONNX export', () => {
  for (const name of ['bert', 'llama']) {
    test(`${name}, LoRA baked: a plain onnxruntime session gives the engine's logits`, async () => {
      const plugin = makePlugin(name, { method: 'lora', r: 4, alpha: 8 }, 11);
      const file = join(tmp, `${name}-baked.onnx`);
      const t0 = performance.now();
      // llama: external data forced, to check that path too.
      const r = exportOnnx(plugin, join(FIXTURES, name), file, name === 'llama' ? { embedLimitBytes: 0 } : {});
      const ms = performance.now() - t0;
      const b = batch(name);
      const run = await ortRun(file, withoutLabels(b));
      assert.deepEqual([...run.outputNames], ['logits']);
      assert.deepEqual([...run.inputNames].sort(), Object.keys(withoutLabels(b)).sort());
      const d = maxDiff(run.logits, await engineLogits(name, plugin));
      log(
        `onnx baked ${name}: max |Δlogits| ${d.toExponential(2)}, ${ms.toFixed(0)} ms, ${r.bytes} + ${r.dataBytes} bytes, custom ops ${r.customOps.join(' ')}`,
      );
      assert.ok(d < 1e-4, `max logit difference ${d}`);
      const bytes = readFileSync(file);
      for (const f of readModelFolder(join(FIXTURES, name)).files) {
        assert.ok(!bytes.includes(Buffer.from(f.split('/').pop()!)), `the .onnx must not point into ${f}`);
      }
      assert.ok(!bytes.includes(Buffer.from(FIXTURES)));
      if (name === 'llama') {
        assert.ok(r.dataFile && existsSync(r.dataFile) && r.dataBytes > 0);
        assert.ok(bytes.includes(Buffer.from(`${name}-baked.onnx.data`)));
      } else {
        assert.equal(r.dataFile, undefined);
        assert.ok(!existsSync(`${file}.data`));
      }
      assert.ok(r.customOps.includes('com.microsoft:FusedMatMul'));
      const proto = onnxProto.onnx.ModelProto.decode(bytes);
      const meta = JSON.parse(proto.metadataProps.find((m) => m.key === 'delta_studio')!.value!);
      assert.equal(meta.task, TASK[name]);
      assert.equal(meta.mode, 'baked');
      assert.deepEqual(
        r.inputs.map((i) => i.shape),
        r.inputs.map(() => ['batch', 'seq']),
      );
      assert.equal(r.outputs[0].shape[0], 'batch');
    });

    test(`${name}, LoRA as inputs: feeding another plugin of the same structure gives that plugin's logits`, async () => {
      const p1 = makePlugin(name, { method: 'lora', r: 4, alpha: 8 }, 21);
      const p2 = makePlugin(name, { method: 'lora', r: 4, alpha: 8 }, 22);
      const file = join(tmp, `${name}-inputs.onnx`);
      const r = exportOnnx(p1, join(FIXTURES, name), file, { mode: 'inputs' });
      assert.deepEqual(r.deltaInputs.map((i) => i.name).sort(), Object.keys(p1.tensors).sort());
      const side = JSON.parse(readFileSync(r.sidecar, 'utf8'));
      assert.equal(side.mode, 'inputs');
      assert.deepEqual(side.deltaInputs.map((i: { name: string }) => i.name).sort(), Object.keys(p1.tensors).sort());
      if (name === 'bert') assert.deepEqual(side.labels, LABELS);
      const b = withoutLabels(batch(name));
      for (const p of [p1, p2]) {
        const run = await ortRun(file, { ...b, ...p.tensors });
        const d = maxDiff(run.logits, await engineLogits(name, p));
        log(`onnx inputs ${name} (${p === p1 ? 'own' : 'swapped'} plugin): max |Δlogits| ${d.toExponential(2)}`);
        assert.ok(d < 1e-4, `max logit difference ${d}`);
      }
      assert.ok(maxDiff(await engineLogits(name, p1), await engineLogits(name, p2)) > 1e-3, 'the two plugins differ');
    });
  }

  test('soft prompt (llama) and prefix (bert, llama) through ONNX', async () => {
    const soft = makePlugin('llama', { method: 'soft_prompt', soft_token_num: 3 }, 31);
    const f1 = join(tmp, 'llama-soft.onnx');
    exportOnnx(soft, join(FIXTURES, 'llama'), f1);
    const r1 = await ortRun(f1, withoutLabels(batch('llama')));
    assert.deepEqual(r1.logits.shape, [2, 7, 326], 'logits of the real positions only');
    const d1 = maxDiff(r1.logits, await engineLogits('llama', soft));
    const prefix = makePlugin('bert', { method: 'prefix', prefix_token_num: 2, mid_dim: 16 }, 32);
    const f2 = join(tmp, 'bert-prefix.onnx');
    exportOnnx(prefix, join(FIXTURES, 'bert'), f2, { mode: 'inputs' });
    const d2 = maxDiff(
      (await ortRun(f2, { ...withoutLabels(batch('bert')), ...prefix.tensors })).logits,
      await engineLogits('bert', prefix),
    );
    // A plugin that keeps the projected prefixes (key_values) under a reparameterised config is built without the MLP.
    const kv = makePlugin('llama', { method: 'prefix', prefix_token_num: 2, reparameterize: false }, 33);
    const file = join(tmp, 'plugin-projected.delta');
    writePlugin(
      file,
      { ...kv.meta, methods: kv.meta.methods.map((c) => ({ ...c, reparameterize: true })) },
      kv.tensors,
    );
    const f3 = join(tmp, 'llama-prefix.onnx');
    exportOnnx(readPlugin(file), join(FIXTURES, 'llama'), f3);
    const d3 = maxDiff((await ortRun(f3, withoutLabels(batch('llama')))).logits, await engineLogits('llama', kv));
    log(
      `onnx soft prompt llama ${d1.toExponential(2)}, prefix bert ${d2.toExponential(2)}, projected prefix llama ${d3.toExponential(2)}`,
    );
    assert.ok(d1 < 1e-4 && d2 < 1e-4 && d3 < 1e-4, `${d1}, ${d2}, ${d3}`);
  });
});

describe('the merged config.json as transformers reads it', () => {
  test('numbers the source wrote as floats stay floats (1.0, not 1: transformers 5 refuses an int there)', () => {
    // Found by the real-PEFT check (tests/fixtures/verify_peft.py): T5's "initializer_factor": 1.0 came out as 1, and
    // transformers 5.17 refused the merged folder ("Field 'initializer_factor' expected float, got int").
    for (const [name, config] of [
      ['t5', { method: 'lora', r: 2, alpha: 4 }],
      ['llama', { method: 'lora', r: 2, alpha: 4 }],
    ] as const) {
      const dir = join(FIXTURES, name);
      const task: Task = name === 't5' ? 'seq2seq' : 'causal-lm';
      const methods = parseDeltaConfig(config);
      const { model, applied } = loadWithDeltas(dir, { task }, methods);
      const file = join(tmp, `floats-${name}.delta`);
      writePlugin(
        file,
        {
          methods,
          task,
          base: { fingerprint: modelFingerprint(dir), modelType: model.modelType, name },
          metrics: {},
          createdAt: '2025-01-01T00:00:00Z',
        },
        Object.fromEntries(applied.params.map((p) => [p.name, applied.initial[p.value]])),
      );
      const out = exportMerged(readPlugin(file), dir, join(tmp, `merged-floats-${name}`), { dtype: 'float32' }).dir;
      const src = readFileSync(join(dir, 'config.json'), 'utf8');
      const got = readFileSync(join(out, 'config.json'), 'utf8');
      const floats = integralFloatPaths(src);
      assert.ok(floats.size >= 2, [...floats].join());
      assert.deepEqual([...integralFloatPaths(got)].sort(), [...floats].sort());
      if (name === 't5') assert.match(got, /"initializer_factor": 1\.0,/);
      else assert.match(got, /"rope_theta": 10000\.0,/);
      assert.deepEqual(JSON.parse(got).architectures, [model.architecture]);
    }
    assert.deepEqual(
      [...integralFloatPaths('{"a": 1.0, "b": [2, 3.0, {"c": 1e4, "d": 0.5, "e\\"x": -2.0}], "f": "1.0"}')],
      ['a', 'b\u00011', 'b\u00012\u0001c', 'b\u00012\u0001e"x'],
    );
  });
});

describe('exports into a folder that does not exist yet', () => {
  test('merged and ONNX create it and its parents; the merged result lists every file it wrote', () => {
    const plugin = makePlugin('llama', { method: 'lora', r: 4, alpha: 8 }, 45);
    const model = join(FIXTURES, 'llama');
    const out = join(tmp, 'new', 'deeper', 'merged');
    const r = exportMerged(plugin, model, out, { dtype: 'float32', shardBytes: 40_000 });
    assert.deepEqual(
      r.files.map((f) => f.slice(out.length + 1)).sort(),
      readdirSync(out).sort(),
      'files: everything in the folder',
    );
    for (const f of ['config.json', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json'])
      assert.ok(r.files.includes(join(out, f)), f);
    assert.ok(r.weightFiles.length >= 2 && r.weightFiles.every((f) => r.files.includes(f)));
    const single = exportMerged(plugin, model, join(tmp, 'new', 'single'), { dtype: 'float32' });
    assert.deepEqual(single.files.map((f) => f.slice(single.dir.length + 1)).sort(), [
      'config.json',
      'model.safetensors',
      'special_tokens_map.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const onnxFile = join(tmp, 'new', 'onnx', 'here', 'model.onnx');
    exportOnnx(plugin, model, onnxFile);
    assert.ok(existsSync(onnxFile) && existsSync(`${onnxFile}.json`));
  });

  test('a failed export removes the folders it made for itself, and nothing else', () => {
    const plugin = makePlugin('bert', { method: 'lora', r: 4, alpha: 8 }, 46);
    const base = join(tmp, 'made-then-failed');
    mkdirSync(base);
    const fail = (): never => {
      throw new Error('disk full (test)');
    };
    assert.throws(
      () => exportMerged(plugin, join(FIXTURES, 'bert'), join(base, 'a', 'b', 'out'), { onProgress: fail }),
      /disk full \(test\)/,
    );
    assert.deepEqual(readdirSync(base), [], 'a/b was made for the export and removed with it');
  });
});

describe('refusals leave nothing behind', () => {
  test('an adapter plugin cannot be merged, and says why', () => {
    const plugin = makePlugin('bert', { method: 'adapter', bottleneck_dim: 8 }, 41);
    const parent = join(tmp, 'refused');
    mkdirSync(parent);
    assert.throws(
      () => exportMerged(plugin, join(FIXTURES, 'bert'), join(parent, 'out')),
      /adapter cannot be merged into the base weights: it inserts bottleneck adapter layers.*ONNX/,
    );
    assert.deepEqual(readdirSync(parent), []);
  });

  test('an existing non-empty folder is refused unless overwrite; overwrite replaces it whole', () => {
    const plugin = makePlugin('bert', { method: 'lora', r: 4, alpha: 8 }, 42);
    const parent = join(tmp, 'existing');
    const out = join(parent, 'out');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'keep.txt'), 'mine');
    assert.throws(() => exportMerged(plugin, join(FIXTURES, 'bert'), out), /exists and is not empty/);
    assert.deepEqual(readdirSync(out), ['keep.txt']);
    assert.deepEqual(readdirSync(parent), ['out']);
    exportMerged(plugin, join(FIXTURES, 'bert'), out, { overwrite: true, dtype: 'float32' });
    assert.ok(!existsSync(join(out, 'keep.txt')) && existsSync(join(out, 'model.safetensors')));
    assert.deepEqual(readdirSync(parent), ['out']);
    assert.throws(
      () => exportMerged(plugin, join(FIXTURES, 'bert'), FIXTURES + 'bert', { overwrite: true }),
      /replace the model folder it reads/,
    );
  });

  test('a failure while writing removes the partial folder; an ONNX export onto an existing file or another base is refused', () => {
    // A copy of bert whose vocab.txt is a dangling link: the export fails after the weights are written.
    const parent = join(tmp, 'failing');
    const model = join(parent, 'bert-copy');
    mkdirSync(model, { recursive: true });
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(FIXTURES, 'bert', f), join(model, f));
    symlinkSync(join(parent, 'missing-target'), join(model, 'vocab.txt'));
    const plugin = makePlugin('bert', { method: 'lora', r: 4, alpha: 8 }, 43, model);
    assert.throws(() => exportMerged(plugin, model, join(parent, 'out')), /ENOENT/);
    assert.deepEqual(readdirSync(parent), ['bert-copy']);

    const file = join(parent, 'model.onnx');
    exportOnnx(plugin, model, file);
    assert.throws(() => exportOnnx(plugin, model, file), /exists; choose another file or pass overwrite/);
    const gpt2 = makePlugin('gpt2', { method: 'lora', r: 4, alpha: 8 }, 44);
    assert.throws(() => exportOnnx(gpt2, model, join(parent, 'other.onnx')), /trained on another base model/);
    assert.deepEqual(readdirSync(parent).sort(), ['bert-copy', 'model.onnx', 'model.onnx.json']);
  });
});
