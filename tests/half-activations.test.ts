import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeLlamaFolder } from '../bench/gpu-model.js';
import { buildGradients } from '../native/autodiff/backward.js';
import { memoryPlan } from '../native/autodiff/memory.js';
import { RECOMPUTE_KINDS } from '../native/autodiff/recompute.js';
import { loadWithDeltas, parseDeltaConfig } from '../native/delta/index.js';
import { DTYPES, toFloat16Bits, toFloat32 } from '../native/onnx/dtype.js';
import { Graph, type HostTensor } from '../native/onnx/graph.js';
import { Rng } from '../native/rng.js';
import { openSession, runSession } from '../native/runtime/session.js';
import { LOSS_SCALE, StepRunner } from '../native/train/runner.js';
import { buildTrainStep, names, type TrainStepSpec } from '../native/train/step.js';

const FIX = (n: string): string => fileURLToPath(new URL(`./fixtures/models/${n}`, import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'ds-half-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const llama = join(tmp, 'llama');
writeLlamaFolder(llama, { hidden: 64, layers: 3, heads: 4, kvHeads: 2, intermediate: 96, vocab: 300 });

function build(dir: string, task: string, precision: 'float32' | 'float16', extra: Partial<TrainStepSpec> = {}) {
  const { model, applied } = loadWithDeltas(
    dir,
    { task: task as never, precision },
    parseDeltaConfig({ method: 'lora', r: 4 }),
  );
  const graphs = buildTrainStep({
    forward: model.graph,
    loss: model.loss,
    trainable: applied.trainable,
    optimizer: { maxGradNorm: 0 },
    ...extra,
  });
  return { graphs, model, applied };
}

function feeds(b: ReturnType<typeof build>, batch = 2, seq = 12): Record<string, HostTensor> {
  const rng = new Rng(23);
  const n = batch * seq;
  const shape = [batch, seq];
  const out: Record<string, HostTensor> = {
    [names.lr]: { dtype: 'float32', shape: [], data: Float32Array.of(1e-3) },
    [names.step]: { dtype: 'int64', shape: [], data: BigInt64Array.of(1n) },
    [names.lossScale]: { dtype: 'float32', shape: [], data: Float32Array.of(4096) },
  };
  for (const name of b.model.inputs) {
    if (name.endsWith('attention_mask'))
      out[name] = { dtype: 'int64', shape, data: BigInt64Array.from({ length: n }, (_, i) => (i < 3 ? 0n : 1n)) };
    else if (name === 'token_type_ids') out[name] = { dtype: 'int64', shape, data: new BigInt64Array(n) };
    else if (name === 'labels' && b.model.task === 'classification')
      out[name] = { dtype: 'int64', shape: [batch], data: BigInt64Array.of(0n, 1n) };
    else
      out[name] = {
        dtype: 'int64',
        shape,
        data: BigInt64Array.from({ length: n }, () => BigInt(rng.int(b.model.dims.vocab))),
      };
  }
  for (const p of b.applied.trainable) {
    const t = b.applied.initial[p];
    out[p] = p.endsWith('lora_B')
      ? { ...t, data: Float32Array.from({ length: t.data.length }, (_, i) => Math.sin(i) / 20) }
      : t;
    out[names.m(p)] = { dtype: 'float32', shape: t.shape, data: new Float32Array(t.data.length) };
    out[names.v(p)] = { dtype: 'float32', shape: t.shape, data: new Float32Array(t.data.length) };
  }
  return out;
}

async function run(b: ReturnType<typeof build>, f: Record<string, HostTensor>) {
  const s = await openSession(b.graphs.step!, { device: 'cpu' });
  const out = await runSession(s, Object.fromEntries(Object.entries(f).filter(([k]) => s.inputNames.includes(k))));
  await s.session.release();
  return out;
}

/** ‖a − b‖ / ‖b‖ over the first moments after one step: (1 − β₁)·gradient, so gradients compared. */
function gradErr(a: Record<string, HostTensor>, b: Record<string, HostTensor>): number {
  let num = 0,
    den = 0;
  for (const k of Object.keys(b))
    if (k.endsWith('::adam_m_updated'))
      for (let i = 0; i < b[k].data.length; i++) {
        num += (Number(a[k].data[i]) - Number(b[k].data[i])) ** 2;
        den += Number(b[k].data[i]) ** 2;
      }
  return Math.sqrt(num / den);
}

for (const [name, dir, task, precision] of [
  ['llama (grouped-query attention, float16 weights)', llama, 'causal-lm', 'float16'],
  ['llama fixture (float32 weights)', FIX('llama'), 'causal-lm', 'float32'],
  ['gpt2', FIX('gpt2'), 'causal-lm', 'float16'],
  ['bert classification', FIX('bert'), 'classification', 'float32'],
  ['t5', FIX('t5'), 'seq2seq', 'float16'],
] as const) {
  test(`${name}: a step with float16 activations gives the float32 step's loss and gradients to float16 precision`, async () => {
    const full = build(dir, task, precision);
    const half = build(dir, task, precision, { activations: 'float16' });
    assert.equal(half.graphs.lossScaled, true);
    const f = feeds(full);
    const a = await run(full, f);
    const b = await run(half, f);
    const [la, lb] = [Number(a[names.loss].data[0]), Number(b[names.loss].data[0])];
    assert.ok(Math.abs(la - lb) / Math.abs(la) < 2e-3, `loss ${lb} vs ${la}`);
    // float16 keeps 11 significant bits; over a few layers of products, a few percent at most.
    const err = gradErr(b, a);
    assert.ok(err < 5e-2, `gradient relative error ${err}`);
    // Parameters and moments stay float32.
    for (const p of full.applied.trainable) assert.equal(b[names.out(p)].dtype, 'float32');
  });
}

test('float16 activations keep float16 values; recomputation gives the same step', async () => {
  const sizes = { batch: 4, seq: 64 };
  // As on CUDA, where float16 activations are used: attention recomputed (its probabilities are float32 softmax outputs).
  const full = memoryPlan(build(llama, 'causal-lm', 'float16', { recompute: ['attention'] }).graphs.step!, sizes);
  const halfB = build(llama, 'causal-lm', 'float16', { activations: 'float16', recompute: ['attention'] });
  const half = memoryPlan(halfB.graphs.step!, sizes);
  assert.ok(half.peakBytes < 0.7 * full.peakBytes, `${half.peakBytes} vs ${full.peakBytes}`);
  const g = halfB.graphs.step!;
  const kept = half.live.filter((v) => v.phase === 'forward' && v.kind !== 'logits and vocabulary softmax');
  const f16 = kept.filter((v) => g.value(v.name).dtype === 'float16').reduce((s, v) => s + v.bytes, 0);
  const f32 = kept.filter((v) => g.value(v.name).dtype === 'float32').reduce((s, v) => s + v.bytes, 0);
  // Softmax probabilities and norm statistics are the float32 values kept.
  assert.ok(f16 > f32, `kept float16 ${f16} B, float32 ${f32} B`);
  const f = feeds(halfB);
  const a = await run(halfB, f);
  const exact = await run(
    build(llama, 'causal-lm', 'float16', { recompute: ['attention', 'repeats'], activations: 'float16' }),
    f,
  );
  for (const k of Object.keys(a)) assert.deepEqual(exact[k].data, a[k].data, k);
  // The CPU provider has no float16 kernel for some ops and runs them in float32 between casts it inserts; a chain of
  // them (SiLU then the product with `up`) skips the rounding in between, which a recomputed SiLU, read by another
  // node, does not: recomputed activations and norms agree to float16 rounding here (CUDA has float16 kernels for both).
  const all = await run(
    build(llama, 'causal-lm', 'float16', { recompute: RECOMPUTE_KINDS, activations: 'float16' }),
    f,
  );
  assert.ok(gradErr(all, a) < 1e-3, `${gradErr(all, a)}`);
});

test('dynamic loss scaling: an overflow leaves the parameters, is not counted, and halves the scale', async () => {
  const b = build(llama, 'causal-lm', 'float32', { activations: 'float16' });
  const f = feeds(b);
  const batch = Object.fromEntries(b.model.inputs.map((k) => [k, f[k]]));
  const runner = await StepRunner.open(b.graphs, b.applied.initial, { inWorker: false, session: { device: 'cpu' } });
  assert.equal(runner.lossScale, LOSS_SCALE.initial);
  const before = Float32Array.from(runner.params[b.applied.trainable[0]].data as Float32Array);
  runner.lossScale = 1e30; // float16 gradients of a loss scaled by 1e30 overflow
  const r = await runner.step([batch], 1e-3);
  assert.equal(r.skipped, true);
  assert.ok(!Number.isFinite(r.gradNorm));
  assert.equal(runner.lossScale, 5e29);
  assert.equal(runner.t, 0);
  assert.deepEqual(runner.params[b.applied.trainable[0]].data, before);
  runner.lossScale = 1024;
  const ok = await runner.step([batch], 1e-3);
  assert.equal(ok.skipped, undefined);
  assert.ok(Number.isFinite(ok.gradNorm) && ok.gradNorm > 0);
  assert.equal(runner.t, 1);
  assert.notDeepEqual(runner.params[b.applied.trainable[0]].data, before);
  await runner.release();
});

test('float16 activations with gradient accumulation: the scale reaches both graphs', async () => {
  const b = build(llama, 'causal-lm', 'float32', { activations: 'float16', accumulation: 2 });
  assert.ok(b.graphs.accumulate!.inputs.includes(names.lossScale));
  assert.ok(b.graphs.apply!.inputs.includes(names.lossScale));
  const f = feeds(b);
  const batch = Object.fromEntries(b.model.inputs.map((k) => [k, f[k]]));
  const runner = await StepRunner.open(b.graphs, b.applied.initial, { inWorker: false, session: { device: 'cpu' } });
  const r = await runner.step([batch, batch], 1e-3);
  assert.ok(Number.isFinite(r.loss) && Number.isFinite(r.gradNorm) && r.gradNorm > 0);
  await runner.release();
});

test("the loss's gradient on float16 logits: float16 work over [N, C], and exact at a label the model is sure of", async () => {
  const [N, C] = [4, 50];
  const g = new Graph();
  const x = g.input('logits', 'float16', [N, C]);
  const labels = g.input('labels', 'int64', [N]);
  const wide = g.op1('Cast', [x], { to: DTYPES.float32.onnx }); // what autocast puts before the loss
  const loss = g.op1('SoftmaxCrossEntropyLoss', [wide, labels], { ignore_index: -100 });
  const seed = g.input('seed', 'float32', []);
  const grad = buildGradients(g, { loss: loss.name, wrt: ['logits'], seed }).get('logits')!;
  g.output(loss);
  g.output(grad);
  g.prune();
  assert.equal(grad.dtype, 'float16');
  const backward = g.nodes.slice(g.nodes.findIndex((n) => n.outputs.includes(loss.name)) + 1);
  for (const n of backward)
    for (const o of n.outputs.filter((o) => o && g.value(o).shape.length === 2 && g.value(o).shape[1] === C))
      assert.equal(g.value(o).dtype, 'float16', `${n.name} (${n.op}) makes a float32 [N, C] value`);

  // Row 0: the label's logit far ahead (its probability ≈ 0.9997, between float16's 0.99951 and 1); row 3
  // ignored; the others random. The gradient, (softmax − onehot) · 8192 / 3 rows, against float64.
  const rng = new Rng(5);
  const logits = Array.from({ length: N * C }, () => rng.normal());
  logits[7] = 12.5;
  const half = toFloat32('float16', new Uint8Array(toFloat16Bits(Float32Array.from(logits)).buffer));
  const y = [7, 3, 49, -100];
  const scale = 8192;
  const s = await openSession(g, { device: 'cpu' });
  const out = await runSession(s, {
    logits: { dtype: 'float16', shape: [N, C], data: toFloat16Bits(half) },
    labels: { dtype: 'int64', shape: [N], data: BigInt64Array.from(y, BigInt) },
    seed: { dtype: 'float32', shape: [], data: Float32Array.of(scale) },
  });
  await s.session.release();
  const got = toFloat32('float16', new Uint8Array((out[grad.name].data as Uint16Array).buffer));
  for (let i = 0; i < N; i++) {
    const row = Array.from(half.subarray(i * C, (i + 1) * C), Number);
    const m = Math.max(...row);
    const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
    for (let j = 0; j < C; j++) {
      const want = y[i] < 0 ? 0 : ((Math.exp(row[j] - m) / z - (j === y[i] ? 1 : 0)) * scale) / 3;
      const err = Math.abs(got[i * C + j] - want);
      // Two float16 roundings (the probability, then its product with the row's weight) and no more.
      assert.ok(err <= 2 * 2 ** -11 * Math.abs(want) + 1e-7, `[${i}, ${j}]: ${got[i * C + j]} vs ${want}`);
    }
  }
  // Row 0's label entry, (p − 1)·w, within 0.1%; from a float16 p it would be off by more than 10%.
  const row0 = Array.from(half.subarray(0, C), Number);
  const p = Math.exp(row0[7]) / row0.reduce((a, v) => a + Math.exp(v), 0);
  const want = ((p - 1) * scale) / 3;
  const p16 = toFloat32('float16', new Uint8Array(toFloat16Bits(Float32Array.of(p)).buffer))[0];
  assert.ok(Math.abs(((p16 - 1) * scale) / 3 - want) > 0.1 * Math.abs(want), `p ${p} rounds to ${p16}`);
  assert.ok(Math.abs(got[7] - want) < 1e-3 * Math.abs(want), `${got[7]} vs ${want}`);
});

test('the loss on float16 logits: float32 only a chunk of the vocabulary at a time, the same loss and step', async () => {
  const sizes = { batch: 4, seq: 64 };
  const whole = build(llama, 'causal-lm', 'float16', { activations: 'float16', lossColumns: 1000 });
  const chunked = build(llama, 'causal-lm', 'float16', { activations: 'float16', lossColumns: 128 });
  const g = chunked.graphs.step!;
  // The vocabulary (300 columns) in three float32 chunks; no [N, 300] float32 value anywhere in the step.
  const logSoftmax = g.nodes.filter((n) => n.op === 'LogSoftmax').map((n) => g.value(n.outputs[0]).shape[1]);
  assert.deepEqual(logSoftmax, [100, 100, 100]);
  for (const [name, v] of g.values)
    if (g.nodes.some((n) => n.outputs.includes(name)) && v.shape.at(-1) === 300)
      assert.equal(v.dtype, 'float16', `${name} is ${v.dtype}[${v.shape}]`);
  // The gradient's pick of each label's log probability reads the float16 logits, not log probabilities.
  assert.equal(g.nodes.filter((n) => n.op === 'GatherElements').length, 2);
  const peak = (b: ReturnType<typeof build>) => memoryPlan(b.graphs.step!, sizes, { hints: { vocab: 300 } });
  const [pw, pc] = [peak(whole), peak(chunked)];
  assert.ok(pc.peakBytes < pw.peakBytes, `chunked peak ${pc.peakBytes} B vs whole ${pw.peakBytes} B`);

  const f = feeds(whole);
  const [a, b] = [await run(whole, f), await run(chunked, f)];
  const [la, lb] = [Number(a[names.loss].data[0]), Number(b[names.loss].data[0])];
  assert.ok(Math.abs(la - lb) <= 1e-6 * la, `loss ${lb} vs ${la}`);
  assert.ok(gradErr(b, a) < 1e-6, `gradients differ by ${gradErr(b, a)}`);
  // And the float32 step, computed the plain way (LogSoftmax over the whole vocabulary), agrees to float16 precision.
  const plain = await run(build(llama, 'causal-lm', 'float16'), f);
  const lp = Number(plain[names.loss].data[0]);
  assert.ok(Math.abs(lb - lp) < 2e-3 * lp, `loss ${lb} vs ${lp}`);
});
