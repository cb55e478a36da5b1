import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadWithDeltas, parseDeltaConfig, type DeltaConfig } from '../native/delta/index.js';
import { loraScale } from '../native/delta/methods/lora/index.js';
import { toFloat32 } from '../native/onnx/dtype.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { readTensorBytes } from '../native/onnx/safetensors.js';
import { readModelFolder } from '../native/models/folder.js';
import { loadModel, type BuiltModel, type Task } from '../native/models/index.js';
import { TextTokenizer } from '../native/models/tokenizer.js';
import {
  modelFingerprint,
  PluginError,
  readPlugin,
  writePlugin,
  type BaseModelInfo,
} from '../native/plugins/format.js';
import { PluginSession, type Prediction } from '../native/plugins/session.js';
import { Rng } from '../native/rng.js';
import { openInline } from '../native/runtime/host.js';
import { makeCollator } from '../native/train/collate.js';
import { withoutDropout } from '../native/train/dropout.js';
import { Generator } from '../native/train/generate.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const BERT = join(FIXTURES, 'bert');
const LLAMA = join(FIXTURES, 'llama');
const LABELS = ['neg', 'neu', 'pos'];
const TEXTS = ['the film was fine', 'a dull and long story', 'we loved it'];
const MAX_LENGTH = 32;

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'plugin-session-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

interface Made {
  file: string;
  configs: DeltaConfig[];
  /** Tensors by plugin name. */
  tensors: Record<string, HostTensor>;
}

/** A plugin with random, non-trivial values for every parameter its methods add on `modelDir` (no training). */
function makePlugin(
  name: string,
  modelDir: string,
  task: Task,
  raw: unknown,
  seed: number,
  opts: { labels?: string[]; base?: BaseModelInfo } = {},
): Made {
  const configs = parseDeltaConfig(raw);
  const { applied } = loadWithDeltas(modelDir, { task, numLabels: opts.labels?.length }, configs, seed);
  const rng = new Rng(seed + 7919);
  const tensors: Record<string, HostTensor> = {};
  for (const p of applied.params) {
    const init = applied.initial[p.value];
    const base = p.name.endsWith('.ia3_l') ? () => 1 : (i: number) => Number(init.data[i]);
    tensors[p.name] = {
      dtype: 'float32',
      shape: [...init.shape],
      data: Float32Array.from({ length: init.data.length }, (_, i) => base(i) + 0.3 * rng.normal()),
    };
  }
  const file = join(dir, `${name}.delta`);
  const base = opts.base ?? {
    fingerprint: modelFingerprint(modelDir),
    modelType: String(readModelFolder(modelDir).config.model_type),
    name: basename(modelDir),
  };
  writePlugin(
    file,
    {
      methods: configs,
      task,
      labels: opts.labels,
      base,
      metrics: {},
      createdAt: new Date(0).toISOString(),
      maxLength: MAX_LENGTH,
    },
    tensors,
  );
  return { file, configs, tensors };
}

/** Logits of a freshly built model: `configs` applied in one go, their parameters set to `values` (by plugin name). */
async function referenceLogits(
  model: BuiltModel,
  values: Record<string, HostTensor>,
  trainable: { name: string; value: string }[] = [],
): Promise<Float32Array> {
  const g = withoutDropout(model.graph);
  for (const p of trainable) if (g.initializers.has(p.value)) g.promoteToInput(p.value);
  g.outputs.length = 0;
  g.output(model.logits);
  g.prune();
  const s = await openInline(g, { device: 'cpu' });
  const collate = makeCollator(model, TextTokenizer.fromFolder(BERT), { maxLength: MAX_LENGTH, labels: LABELS });
  const batch = collate.batch(TEXTS.map((text) => ({ text, label: model.task === 'regression' ? '0' : LABELS[0] })));
  const feeds: Record<string, HostTensor> = {};
  for (const n of s.inputNames) feeds[n] = batch[n] ?? values[trainable.find((p) => p.value === n)!.name];
  const out = await s.run(feeds);
  await s.release();
  return out[model.logits].data as Float32Array;
}

async function reference(
  configs: DeltaConfig[],
  values: Record<string, HostTensor>,
  numLabels = 3,
): Promise<Float32Array> {
  const { model, applied } = loadWithDeltas(BERT, { task: 'classification', numLabels }, configs);
  return referenceLogits(model, values, applied.params);
}

function probsOf(preds: Prediction[]): number[] {
  return preds.flatMap((p) => {
    assert.ok('probabilities' in p);
    return Object.values(p.probabilities);
  });
}

function softmaxRows(logits: Float32Array, C: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < logits.length / C; r++) {
    const row = Array.from(logits.subarray(r * C, r * C + C));
    const m = Math.max(...row);
    const e = row.map((x) => Math.exp(x - m));
    const z = e.reduce((a, b) => a + b, 0);
    out.push(...e.map((x) => x / z));
  }
  return out;
}

function assertClose(got: number[], want: number[], tol = 1e-5, what = 'values'): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
  assert.ok(worst <= tol, `${what}: max |difference| ${worst} > ${tol}`);
}

const maxDiff = (a: number[], b: number[]): number => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

const LORA = { method: 'lora', r: 4, alpha: 8 };
const IA3 = { method: 'ia3' };

describe('plugin session', () => {
  let loraA: Made, loraB: Made, ia3: Made;
  before(() => {
    loraA = makePlugin('lora-a', BERT, 'classification', LORA, 1, { labels: LABELS });
    loraB = makePlugin('lora-b', BERT, 'classification', { ...LORA, dropout: 0.1 }, 2, { labels: LABELS });
    ia3 = makePlugin('ia3', BERT, 'classification', IA3, 3, { labels: LABELS });
  });

  test('swapping plugins of one structure reuses the compiled session; each equals a fresh model', async () => {
    const s = await PluginSession.open(BERT, { device: 'cpu' });
    s.attach([loraA.file]);
    const a = probsOf(await s.predict(TEXTS));
    assert.equal(s.sessionsBuilt, 1);
    s.detach('lora-a');
    // lora-b differs only in dropout, which the inference graph does not have: same structure.
    s.attach([loraB.file]);
    const b = probsOf(await s.predict(TEXTS));
    assert.equal(s.sessionsBuilt, 1, 'a swap compiles nothing');
    assertClose(a, softmaxRows(await reference(loraA.configs, loraA.tensors), 3), 1e-5, 'lora-a');
    assertClose(b, softmaxRows(await reference(loraB.configs, loraB.tensors), 3), 1e-5, 'lora-b');
    assert.ok(maxDiff(a, b) > 1e-3, 'the two plugins predict differently');
    const preds = await s.predict(TEXTS);
    assert.ok('label' in preds[0] && LABELS.includes(preds[0].label));
    await s.close();
  });

  test('LoRA + (IA)³ plugins equal one graph with both configs; two LoRA plugins equal W x + s1 B1 A1 x + s2 B2 A2 x', async () => {
    const s = await PluginSession.open(BERT, { device: 'cpu' });
    s.attach([loraA.file, ia3.file]);
    assert.deepEqual(
      s.attached.map((p) => p.name),
      ['lora-a', 'ia3'],
    );
    const combo = probsOf(await s.predict(TEXTS));
    assertClose(
      combo,
      softmaxRows(await reference([...loraA.configs, ...ia3.configs], { ...loraA.tensors, ...ia3.tensors }), 3),
      1e-5,
      'lora + ia3',
    );

    s.detach();
    s.attach([loraA.file, loraB.file]);
    const two = probsOf(await s.predict(TEXTS));
    // The math, directly: both low-rank updates added to the base weights.
    const folder = readModelFolder(BERT);
    const weights: Record<string, HostTensor> = {};
    const scale = loraScale({ r: 4, alpha: 8, rslora: false });
    for (const name of Object.keys(loraA.tensors).filter((n) => n.endsWith('.lora_A'))) {
      const mod = name.slice(0, -'.lora_A'.length);
      const ref = folder.weights.get(`${mod}.weight`)!;
      const W = toFloat32(ref.dtype, readTensorBytes(ref));
      const [outF, inF] = ref.shape;
      for (const p of [loraA, loraB]) {
        const A = p.tensors[`${mod}.lora_A`].data as Float32Array,
          B = p.tensors[`${mod}.lora_B`].data as Float32Array;
        for (let o = 0; o < outF; o++)
          for (let i = 0; i < inF; i++) {
            let d = 0;
            for (let k = 0; k < 4; k++) d += B[o * 4 + k] * A[k * inF + i];
            W[o * inF + i] += scale * d;
          }
      }
      weights[`${mod}.weight`] = { dtype: 'float32', shape: ref.shape, data: W };
    }
    assertClose(two, softmaxRows(await referenceLogits(loadModel(BERT, { weights }), {}), 3), 1e-5, 'two LoRA');
    assert.ok(maxDiff(two, probsOf(await s.predict(TEXTS, { base: true }))) > 1e-3);
    await s.close();
  });

  test('detach returns the base outputs; the base is predictable with plugins attached', async () => {
    const s = await PluginSession.open(BERT, { device: 'cpu' });
    const base = softmaxRows(await referenceLogits(loadModel(BERT), {}), 3);
    s.attach([loraA.file]);
    assertClose(probsOf(await s.predict(TEXTS, { base: true })), base, 1e-5, 'base beside a plugin');
    s.detach('lora-a');
    assertClose(probsOf(await s.predict(TEXTS)), base, 1e-5, 'base after detach');
    assert.throws(() => s.detach('lora-a'), /no plugin "lora-a" is attached/);
    await s.close();
  });

  test('merged weights predict as the attached plugins', async () => {
    const s = await PluginSession.open(BERT, { device: 'cpu' });
    for (const set of [
      [loraA.file, ia3.file],
      [loraA.file, loraB.file],
    ]) {
      s.detach();
      s.attach(set);
      const attached = probsOf(await s.predict(TEXTS));
      const merged = await s.mergeInto(set);
      assertClose(
        probsOf(await merged.predict(TEXTS)),
        attached,
        1e-5,
        `merged ${set.map((f) => basename(f)).join(' + ')}`,
      );
      await merged.close();
    }
    const bitfit = makePlugin('bitfit', BERT, 'classification', { method: 'bitfit' }, 4, { labels: LABELS });
    await assert.rejects(s.mergeInto([bitfit.file]), /plugin "bitfit": merge: bitfit cannot be merged/);
    await s.close();
  });

  test('a plugin for another base is refused with both fingerprints, and accepted when forced', async () => {
    const other = join(FIXTURES, 'roberta');
    const fp = modelFingerprint(other);
    const foreign = makePlugin('foreign', BERT, 'classification', LORA, 5, {
      labels: LABELS,
      base: { fingerprint: fp, modelType: 'roberta', name: 'roberta' },
    });
    const s = await PluginSession.open(BERT, { device: 'cpu' });
    assert.throws(
      () => s.attach([foreign.file]),
      (e: unknown) => {
        assert.ok(e instanceof PluginError && e.code === 'wrong-base');
        assert.match(e.message, new RegExp(fp.slice(0, 16)));
        assert.match(e.message, new RegExp(modelFingerprint(BERT).slice(0, 16)));
        return true;
      },
    );
    assert.deepEqual(s.attached, []);
    const [info] = s.attach([foreign.file], { force: true });
    assert.equal(info.baseMatches, false);
    assert.equal((await s.predict(TEXTS)).length, 3);
    await s.close();
  });

  test('a tampered plugin is refused', async () => {
    const file = join(dir, 'tampered.delta');
    copyFileSync(loraA.file, file);
    const fd = openSync(file, 'r+');
    const at = statSync(file).size - 3;
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] ^= 0x40;
    writeSync(fd, b, 0, 1, at);
    closeSync(fd);
    const s = await PluginSession.open(BERT, { device: 'cpu' });
    assert.throws(
      () => s.attach([file]),
      (e: unknown) => e instanceof PluginError && e.code === 'tampered',
    );
    await s.close();
  });

  test('combinations that cannot work are refused, naming both plugins', async () => {
    const s = await PluginSession.open(BERT, { device: 'cpu' });
    const h1 = makePlugin('head-1', BERT, 'classification', { method: 'head-only' }, 6, { labels: LABELS });
    const h2 = makePlugin('head-2', BERT, 'classification', { method: 'head-only' }, 7, { labels: LABELS });
    assert.throws(
      () => s.attach([h1.file, h2.file]),
      /plugin "head-1" \(head-only\) and plugin "head-2" \(head-only\) both train "(bert\.pooler\.dense|classifier)\.(weight|bias)"/,
    );
    // Two new two-label heads: each plugin carries one.
    const n1 = makePlugin('two-a', BERT, 'classification', LORA, 8, { labels: ['no', 'yes'] });
    const n2 = makePlugin('two-b', BERT, 'classification', LORA, 9, { labels: ['no', 'yes'] });
    assert.throws(
      () => s.attach([n1.file, n2.file]),
      /plugin "two-a" \(new head\) and plugin "two-b" \(new head\) both train "classifier\.weight"/,
    );
    const p1 = makePlugin('prompt-1', BERT, 'classification', { method: 'soft_prompt', soft_token_num: 2 }, 10, {
      labels: LABELS,
    });
    const p2 = makePlugin('prompt-2', BERT, 'classification', { method: 'soft_prompt', soft_token_num: 3 }, 11, {
      labels: LABELS,
    });
    assert.throws(() => s.attach([p1.file, p2.file]), /plugins "prompt-1" and "prompt-2" both use a soft prompt/);
    assert.throws(() => s.attach([loraA.file, n1.file]), /disagree on the labels/);
    assert.throws(() => s.attach([loraA.file, loraA.file]), /a plugin named "lora-a" is already attached/);
    assert.deepEqual(s.attached, [], 'a refused attach changes nothing');
    // One soft prompt with a LoRA plugin is fine, and so is one new head (the base lacks it, so it cannot be compared).
    s.attach([p1.file, loraA.file]);
    assert.equal((await s.predict(TEXTS)).length, 3);
    s.detach();
    s.attach([n1.file]);
    const [pred] = await s.predict(TEXTS.slice(0, 1));
    assert.ok('label' in pred && ['no', 'yes'].includes(pred.label));
    await assert.rejects(s.predict(TEXTS, { base: true }), /has no trained classification head for 2 labels/);
    await s.close();
  });

  test('a regression plugin (with the new one-output head it carries) predicts values', async () => {
    const reg = makePlugin('score', BERT, 'regression', LORA, 13);
    const s = await PluginSession.open(BERT, { device: 'cpu' });
    s.attach([reg.file]);
    const got = (await s.predict(TEXTS)).map((p) => {
      assert.ok('value' in p);
      return p.value;
    });
    const { model, applied } = loadWithDeltas(BERT, { task: 'regression' }, reg.configs);
    assertClose(got, Array.from(await referenceLogits(model, reg.tensors, applied.params)), 1e-5, 'regression');
    await s.close();
  });

  test('structures are kept in a small LRU; an evicted one is compiled again', async () => {
    const s = await PluginSession.open(BERT, { device: 'cpu', cacheSize: 1 });
    s.attach([loraA.file]);
    await s.predict(TEXTS);
    s.detach();
    s.attach([ia3.file]);
    await s.predict(TEXTS);
    s.detach();
    s.attach([loraB.file]);
    await s.predict(TEXTS);
    assert.equal(s.sessionsBuilt, 3);
    assert.equal(s.counters.evicted, 2);
    await s.close();
  });
});

describe('plugin session with a language model', () => {
  test('an LM plugin generates what a fresh model with its values generates', async () => {
    const lm = makePlugin('llama-lora', LLAMA, 'causal-lm', { method: 'lora', r: 2, alpha: 16 }, 12);
    const s = await PluginSession.open(LLAMA, { device: 'cpu' });
    s.attach([lm.file]);
    const [got] = await s.predict(['once upon a time'], { maxNewTokens: 6 });
    assert.ok('generated' in got && typeof got.generated === 'string');
    const { model, applied } = loadWithDeltas(LLAMA, { task: 'causal-lm' }, lm.configs);
    const gen = await Generator.open(model, TextTokenizer.fromFolder(LLAMA), applied.trainable, 'cpu');
    const params = Object.fromEntries(applied.params.map((p) => [p.value, lm.tensors[p.name]]));
    assert.equal(got.generated, await gen.generate('once upon a time', params, 6));
    await gen.release();
    const [base] = await s.predict(['once upon a time'], { maxNewTokens: 6, base: true });
    assert.ok('generated' in base);
    await s.close();
  });
});

test('a plugin or run folder from before the one task vocabulary (task "seq2seq-lm") reads as seq2seq', () => {
  const T5 = join(FIXTURES, 't5');
  const file = join(dir, 'legacy-t5.delta');
  const meta = {
    methods: [{ method: 'bitfit' }],
    task: 'seq2seq-lm' as Task,
    base: { fingerprint: modelFingerprint(T5), modelType: 't5', name: 't5' },
    metrics: {},
    createdAt: new Date(0).toISOString(),
  };
  writePlugin(file, meta, { x: { dtype: 'float32', shape: [1], data: new Float32Array([1]) } });
  assert.equal(readPlugin(file).meta.task, 'seq2seq');
  assert.equal(loadModel(T5, { task: 'seq2seq-lm' as Task }).task, 'seq2seq');
});
