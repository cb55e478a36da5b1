import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeLlamaFolder } from '../bench/gpu-model.js';
import { evalDim, memoryPlan, memoryTraffic, onnxruntimeOrder } from '../native/autodiff/memory.js';
import { RECOMPUTE_KINDS, recomputeSet, type RecomputeKind } from '../native/autodiff/recompute.js';
import { loadWithDeltas, parseDeltaConfig } from '../native/delta/index.js';
import { Graph, type HostTensor } from '../native/onnx/graph.js';
import { openSession, runSession } from '../native/runtime/session.js';
import { Rng } from '../native/rng.js';
import { buildTrainStep, DEFAULT_RECOMPUTE, names, recomputeFor } from '../native/train/step.js';

const FIX = (n: string): string => fileURLToPath(new URL(`./fixtures/models/${n}`, import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'ds-recompute-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

// A Llama with grouped-query attention, random weights.
const llama = join(tmp, 'llama');
writeLlamaFolder(llama, { hidden: 64, layers: 3, heads: 4, kvHeads: 2, intermediate: 96, vocab: 300 });

function step(dir: string, task: string, delta: unknown, recompute: readonly RecomputeKind[]) {
  const { model, applied } = loadWithDeltas(dir, { task: task as never }, parseDeltaConfig(delta));
  const graphs = buildTrainStep({
    forward: model.graph,
    loss: model.loss,
    trainable: applied.trainable,
    optimizer: { weightDecay: 0.01, maxGradNorm: 1 },
    recompute,
  });
  return { g: graphs.step!, model, applied, dropout: graphs.dropoutNodes > 0 };
}

function feedsFor(s: ReturnType<typeof step>, batch: number, seq: number): Record<string, HostTensor> {
  const rng = new Rng(17);
  const n = batch * seq;
  const shape = [batch, seq];
  const vocab = s.model.dims.vocab;
  const ids = (): HostTensor => ({
    dtype: 'int64',
    shape,
    data: BigInt64Array.from({ length: n }, () => BigInt(rng.int(vocab))),
  });
  // Left padding in the first row, so that masked attention is part of what is compared.
  const mask = BigInt64Array.from({ length: n }, (_, i) => (i < 2 ? 0n : 1n));
  const feeds: Record<string, HostTensor> = {
    [names.lr]: { dtype: 'float32', shape: [], data: Float32Array.of(1e-3) },
    [names.step]: { dtype: 'int64', shape: [], data: BigInt64Array.of(1n) },
    [names.seed]: { dtype: 'int64', shape: [], data: BigInt64Array.of(5n) },
  };
  for (const name of s.model.inputs) {
    if (name === 'attention_mask' || name === 'decoder_attention_mask')
      feeds[name] = { dtype: 'int64', shape, data: mask };
    else if (name === 'labels' && s.model.task === 'classification')
      feeds[name] = {
        dtype: 'int64',
        shape: [batch],
        data: BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 2)),
      };
    else if (name === 'token_type_ids') feeds[name] = { dtype: 'int64', shape, data: new BigInt64Array(n) };
    else feeds[name] = ids();
  }
  for (const p of s.applied.trainable) {
    const t = s.applied.initial[p];
    // LoRA B starts at zero; a non-zero one makes A's gradient non-zero too.
    feeds[p] = p.endsWith('lora_B')
      ? { ...t, data: Float32Array.from({ length: t.data.length }, (_, i) => Math.sin(i) * 0.05) }
      : t;
    feeds[names.m(p)] = { dtype: 'float32', shape: t.shape, data: new Float32Array(t.data.length) };
    feeds[names.v(p)] = { dtype: 'float32', shape: t.shape, data: new Float32Array(t.data.length) };
  }
  return feeds;
}

async function run(g: Graph, feeds: Record<string, HostTensor>, profile?: string) {
  const s = await openSession(g, { device: 'cpu', ...(profile ? { profileFilePrefix: profile } : {}) });
  const want = Object.fromEntries(Object.entries(feeds).filter(([k]) => s.inputNames.includes(k)));
  const out = await runSession(s, want);
  if (profile) s.session.endProfiling();
  await s.session.release();
  return out;
}

const CASES: [string, string, string, unknown][] = [
  [
    'llama (grouped-query attention)',
    llama,
    'causal-lm',
    { method: 'lora', r: 4, target_modules: ['q_proj', 'v_proj'] },
  ],
  ['gpt2 with LoRA dropout', FIX('gpt2'), 'causal-lm', { method: 'lora', r: 4, dropout: 0.1 }],
  ['bert classification', FIX('bert'), 'classification', { method: 'lora', r: 4 }],
  ['t5 (encoder, decoder, cross-attention)', FIX('t5'), 'seq2seq', { method: 'lora', r: 4 }],
  ['llama with prefix tuning', FIX('llama'), 'causal-lm', { method: 'prefix', prefix_token_num: 3 }],
  ['bert with a soft prompt', FIX('bert'), 'classification', { method: 'soft_prompt', soft_token_num: 4 }],
];

describe('recomputation in the backward pass', () => {
  for (const [what, dir, task, delta] of CASES) {
    test(`${what}: a step with every value recomputed equals one that keeps them, bit for bit`, async () => {
      const kept = step(dir, task, delta, []);
      const remat = step(dir, task, delta, RECOMPUTE_KINDS);
      const recomputed = recomputeSet(kept.g, RECOMPUTE_KINDS);
      assert.ok(
        remat.g.nodes.some((n) => n.name.includes('/recompute/')),
        `something is recomputed (${recomputed.size} values chosen)`,
      );
      const feeds = feedsFor(kept, 2, 9);
      const a = await run(kept.g, feeds);
      const b = await run(remat.g, feeds);
      assert.ok(Number.isFinite(Number(a[names.loss].data[0])));
      assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
      for (const k of Object.keys(a)) assert.deepEqual(b[k].data, a[k].data, `${k} differs`);
    });
  }

  test('the attention kind picks the S²-sized values of every attention, and only those', () => {
    const g = step(llama, 'causal-lm', CASES[0][3], []).model.graph;
    const set = recomputeSet(g, ['attention']);
    const shapes = [...set].map((v) => `${v} ${g.value(v).shape.join('×')}`);
    // Per layer: Q·Kᵀ, + mask, softmax.
    assert.equal(set.size, 3 * 3, shapes.join(', '));
    for (const v of set) {
      const s = g.value(v).shape;
      assert.deepEqual(s.slice(-2), ['seq', 'seq'], `${v} is [.., seq, seq]`);
      assert.notEqual(s[1], 1, `${v}: the mask, shared by every layer, is kept`);
    }
  });

  test('recomputed values run in the backward pass in onnxruntime, after the forward pass is done', async () => {
    const s = step(llama, 'causal-lm', CASES[0][3], RECOMPUTE_KINDS);
    const dir = mkdtempSync(join(tmp, 'profile-'));
    await run(s.g, feedsFor(s, 2, 9), join(dir, 'step'));
    const events = JSON.parse(readFileSync(join(dir, readdirSync(dir)[0]), 'utf8')) as { cat: string; name: string }[];
    const ran = events.filter((e) => e.cat === 'Node').map((e) => e.name.replace(/_kernel_time$/, ''));
    const lastForward = ran.reduce((last, n, i) => (n.startsWith('model.layers.2/') ? i : last), -1);
    const remade = ran.map((n, i) => [n, i] as const).filter(([n]) => n.includes('/recompute/'));
    assert.ok(remade.length > 10 && lastForward > 0);
    for (const [n, i] of remade)
      assert.ok(i > lastForward, `${n} ran at ${i}, before the forward pass ended (${lastForward})`);
    // The static order this project computes is onnxruntime's, up to the nodes its optimizer changes.
    const position = new Map(ran.map((n, i) => [n, i]));
    const ours = onnxruntimeOrder(s.g)
      .map((n) => n.name)
      .filter((n) => position.has(n));
    let agree = 0,
      pairs = 0;
    for (let i = 0; i < ours.length; i += 2)
      for (let j = i + 1; j < ours.length; j += 5, pairs++)
        if (position.get(ours[i])! < position.get(ours[j])!) agree++;
    assert.ok(agree / pairs > 0.98, `orders agree on ${agree} of ${pairs} pairs`);
  });

  test('the static peak drops with each kind, and attention probabilities are no longer kept', () => {
    const sizes = { batch: 4, seq: 128 };
    const peak = (kinds: RecomputeKind[]) => memoryPlan(step(llama, 'causal-lm', CASES[0][3], kinds).g, sizes);
    const none = peak([]);
    const attention = peak(['attention']);
    const all = peak([...RECOMPUTE_KINDS]);
    assert.ok(none.byKind['attention probabilities'] > 0);
    assert.equal(attention.byKind['attention probabilities'] ?? 0, 0);
    // Of three layers' probabilities (batch 4 × 4 heads × 128² float32), the two below the peak's layer are no longer
    // kept; what they are recomputed from (the mask, layer 0's queries) is.
    const probs = 4 * 4 * 128 * 128 * 4;
    assert.ok(none.peakBytes - attention.peakBytes >= 1.5 * probs, `${none.peakBytes} − ${attention.peakBytes}`);
    assert.ok(all.peakBytes < attention.peakBytes, `${all.peakBytes} < ${attention.peakBytes}`);
    // CUDA recomputes every kind by default; the CPU nothing (it costs time there and memory is seldom short).
    assert.deepEqual(recomputeFor('cuda'), [...RECOMPUTE_KINDS]);
    assert.deepEqual(recomputeFor('cpu'), DEFAULT_RECOMPUTE);
    assert.deepEqual(DEFAULT_RECOMPUTE, []);
  });
});

describe('static memory plan', () => {
  test('symbolic dimensions evaluate for the given sizes', () => {
    const sizes = { batch: 3, seq: 10 };
    assert.equal(evalDim('batch', sizes), 3);
    assert.equal(evalDim('(seq-1)*batch', sizes), 27);
    assert.equal(evalDim('3+seq', sizes), 13);
    assert.equal(evalDim(7, sizes), 7);
    assert.throws(() => evalDim('target', sizes), /no size for "target"/);
  });

  test("views share their source's buffer; a value lives until its last reader", () => {
    const { g } = step(llama, 'causal-lm', CASES[0][3], []);
    const small = memoryPlan(g, { batch: 1, seq: 8 });
    const big = memoryPlan(g, { batch: 2, seq: 8 });
    // Every activation scales with the batch; weights and the trainable inputs do not.
    assert.ok(Math.abs(big.peakBytes / small.peakBytes - 2) < 0.05, `${big.peakBytes / small.peakBytes}`);
    assert.equal(big.weightBytes, small.weightBytes);
    assert.equal(small.timeline.length, g.nodes.length);
    assert.equal(Math.max(...small.timeline) <= small.peakBytes, true);
    const total = small.live.reduce((a, v) => a + v.bytes, 0);
    assert.equal(total, small.peakBytes, 'what is alive at the peak adds up to the peak');
  });

  test('memory-bound traffic: what run-time kernels other than products and views read and write', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 4]);
    const w = g.initializer('w', { dtype: 'float32', shape: [4, 4], data: new Float32Array(16) });
    const folded = g.op1('Mul', [w, g.constant(2, 'float32', [])]); // onnxruntime computes it when it loads
    const y = g.op1('MatMul', [x, folded]);
    const z = g.op1('Add', [g.op1('Reshape', [y, g.constant([-1, 2], 'int64', [2])]), g.constant(1, 'float32', [])]);
    g.output(g.op1('Cast', [z], { to: 10 }));
    g.output(g.op1('Shape', [z]));
    const t = memoryTraffic(g, { batch: 3 });
    // Add reads 12 floats and a scalar and writes 12; Cast reads them and writes 12 halves; Shape reads no data.
    assert.deepEqual(t.byOp, { Add: 4 * (12 + 1 + 12), Cast: 4 * 12 + 2 * 12 });
    assert.equal(t.kernels, 2);
    assert.equal(
      t.bytes,
      Object.values(t.byOp).reduce((a, b) => a + b, 0),
    );
  });
});
