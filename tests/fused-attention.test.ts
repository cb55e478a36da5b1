// Fused attention (ModelOptions.attention = 'fused'): a Llama-family or GPT-2 decoder's causal self-attention as
// one onnxruntime MultiHeadAttention node — flash attention on CUDA — with a gradient rule that makes the
// probabilities again in the backward pass, and its rotary embedding as onnxruntime's fused kernel (its gradient: the
// same kernel). Checked here on the CPU against PyTorch, against the explicit form, and for what it needs
// (right-padded rows) and refuses.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { writeLlamaFolder } from '../bench/gpu-model.js';
import { buildGradients } from '../native/autodiff/backward.js';
import { cudaPlacementProblems } from '../native/autodiff/cuda-kernels.js';
import { memoryTraffic } from '../native/autodiff/memory.js';
import { loadWithDeltas, parseDeltaConfig } from '../native/delta/index.js';
import { loadModel, type BuiltModel } from '../native/models/index.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { serialize } from '../native/onnx/serialize.js';
import { Rng } from '../native/rng.js';
import { openInline } from '../native/runtime/host.js';
import { assertRightPadded } from '../native/train/collate.js';
import { checkFusedAttention, chooseAttention, fusedAttentionOn } from '../native/train/fused-attention-check.js';
import { cudaStatus } from '../native/runtime/providers.js';
import { ortSessionOptions } from '../native/runtime/session.js';
import { StepRunner } from '../native/train/runner.js';
import { attentionFor, buildTrainStep, recomputeFor } from '../native/train/step.js';
import { train, type TrainEvent } from '../native/train/trainer.js';
import { f64, readReference, relErr } from './support/reference.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'ds-fused-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const llama = join(tmp, 'llama');
writeLlamaFolder(llama, { hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 96, vocab: 300 });

const ops = (m: BuiltModel, op: string): number => m.graph.nodes.filter((n) => n.op === op).length;

describe('fused attention equals PyTorch', () => {
  for (const name of ['llama', 'qwen2', 'gpt2']) {
    test(`${name}: logits, loss and full fine-tuning gradients (right-padded rows)`, async () => {
      const dir = join(FIXTURES, name);
      const ref = readReference(dir);
      const m = loadModel(dir, { task: 'causal-lm', attention: 'fused' });
      assert.equal(m.fusedAttention, true);
      assert.equal(ops(m, 'MultiHeadAttention'), m.dims.layers);
      assert.equal(ops(m, 'Softmax'), 0, 'no explicit attention probabilities');
      const rotary = name === 'gpt2' ? 0 : 2 * m.dims.layers; // GPT-2 has learned positions
      assert.equal(ops(m, 'RotaryEmbedding'), rotary, 'queries and keys turned by the fused rotary kernel');
      assert.equal(ops(m, 'Transpose'), 0, 'no head transposes');
      const wrt = [...m.builder.weightValues.entries()].filter(([n]) => ref.has(`grad.${n}`));
      assert.ok(wrt.length > 10);
      const grads = buildGradients(m.graph, { loss: m.loss, wrt: wrt.map(([, v]) => v.name) });
      for (const [n, v] of wrt) m.graph.output(grads.get(v.name)!, `grad.${n}`);
      const s = await openInline(m.graph, { device: 'cpu' });
      const out = await s.run(Object.fromEntries(m.inputs.map((i) => [i, ref.get(i)!])));
      await s.release();
      // The reference batch has a padded row: only real tokens' logits are compared (padding's labels are −100).
      const mask = f64(ref.get('attention_mask')!);
      assert.ok(mask.includes(0), 'the reference batch has padding');
      const V = ref.get('logits')!.shape[2];
      const le = relErr(out.logits, ref.get('logits')!, (i) => mask[Math.floor(i / V)] === 1);
      assert.ok(le < 1e-5, `logits relative error ${le}`);
      const [loss, want] = [f64(out[m.loss])[0], f64(ref.get('loss')!)[0]];
      assert.ok(Math.abs(loss - want) / want < 1e-6, `loss ${loss} vs ${want}`);
      for (const [n] of wrt) {
        const e = relErr(out[`grad.${n}`], ref.get(`grad.${n}`)!, undefined, 1e-5);
        assert.ok(e < 1e-4, `gradient of ${n}: relative error ${e}`);
      }
    });
  }
});

/** A right-padded batch: row 1 has its last 5 positions padded, labelled −100 there. */
function batch(vocab: number, B = 2, S = 16): Record<string, HostTensor> {
  const rng = new Rng(3);
  const shape = [B, S];
  const real = (i: number): boolean => !(Math.floor(i / S) === 1 && i % S >= S - 5);
  const ids = BigInt64Array.from({ length: B * S }, () => BigInt(rng.int(vocab)));
  return {
    input_ids: { dtype: 'int64', shape, data: ids },
    attention_mask: { dtype: 'int64', shape, data: BigInt64Array.from(ids, (_, i) => (real(i) ? 1n : 0n)) },
    labels: { dtype: 'int64', shape, data: BigInt64Array.from(ids, (x, i) => (real(i) ? x : -100n)) },
  };
}

/** A LoRA step graph of the tiny Llama as the trainer builds it for CUDA: float16 activations, every kind recomputed. */
function cudaStep(attention: 'fused' | 'explicit') {
  const { model, applied } = loadWithDeltas(
    llama,
    { task: 'causal-lm', attention, precision: 'float16' },
    parseDeltaConfig({ method: 'lora', r: 4 }),
  );
  return buildTrainStep({
    forward: model.graph,
    loss: model.loss,
    trainable: applied.trainable,
    activations: 'float16',
    recompute: recomputeFor('cuda'),
  }).step!;
}

describe('fused attention in a training step', () => {
  test('LoRA steps: losses, gradient norms and trained parameters equal the explicit form', async () => {
    const run = async (attention: 'fused' | 'explicit') => {
      const { model, applied } = loadWithDeltas(
        llama,
        { task: 'causal-lm', attention },
        parseDeltaConfig({ method: 'lora', r: 4, target_modules: ['q_proj', 'k_proj', 'v_proj'] }),
        1,
      );
      assert.equal(model.fusedAttention, attention === 'fused');
      const graphs = buildTrainStep({
        forward: model.graph,
        loss: model.loss,
        trainable: applied.trainable,
        recompute: recomputeFor('cuda'),
      });
      const runner = await StepRunner.open(graphs, applied.initial, { inWorker: false, session: { device: 'cpu' } });
      const steps = [];
      for (let i = 0; i < 5; i++) steps.push(await runner.step([batch(300)], 5e-3, i));
      const params = runner.params;
      await runner.release();
      return { steps, params };
    };
    const [f, e] = [await run('fused'), await run('explicit')];
    assert.ok(f.steps[4].loss < f.steps[0].loss - 1e-3, 'the steps train');
    for (const [i, s] of f.steps.entries()) {
      assert.ok(
        Math.abs(s.loss - e.steps[i].loss) <= 1e-5 * e.steps[i].loss,
        `step ${i} loss ${s.loss} vs ${e.steps[i].loss}`,
      );
      assert.ok(
        Math.abs(s.gradNorm - e.steps[i].gradNorm) <= 1e-4 * e.steps[i].gradNorm,
        `step ${i} gradient norm ${s.gradNorm} vs ${e.steps[i].gradNorm}`,
      );
    }
    for (const [k, t] of Object.entries(e.params)) {
      const err = relErr(f.params[k], t, undefined, 1e-6);
      assert.ok(err < 1e-4, `${k}: relative difference ${err}`);
    }
  });

  test('float16 activations: the fused node and its gradient compute in float16 on ops the CUDA provider has', () => {
    const problems = (attention: 'fused' | 'explicit') => {
      const step = cudaStep(attention);
      const mha = step.nodes.filter((n) => n.op === 'MultiHeadAttention');
      if (attention === 'fused') {
        assert.equal(mha.length, 2);
        for (const n of mha)
          assert.deepEqual(
            n.inputs.map((i) => step.value(i).dtype),
            ['float16', 'float16', 'float16'],
          );
        const rotary = step.nodes.filter((n) => n.op === 'RotaryEmbedding');
        // 4 forward; backward for all but the first layer's keys, which lead to nothing trainable.
        assert.equal(rotary.length, 4 + 3);
        for (const n of rotary)
          assert.deepEqual(
            [0, 2, 3].map((i) => step.value(n.inputs[i]).dtype),
            ['float16', 'float16', 'float16'],
          );
        const softmax = step.nodes.filter((n) => n.op === 'Softmax' && n.name.includes('MultiHeadAttention'));
        assert.equal(softmax.length, 2, 'one softmax per layer, in the backward pass');
        for (const n of softmax) assert.equal(step.value(n.inputs[0]).dtype, 'float16');
      }
      return new Set(cudaPlacementProblems(step).map((p) => `${p.op}(${p.dtype})`));
    };
    const explicit = problems('explicit');
    for (const p of problems('fused')) assert.ok(explicit.has(p), `${p} is placed off CUDA only with fused attention`);
  });

  test("a float16-activation step with fused attention gives the float32 step's loss and gradient norm", async () => {
    // The CPU provider runs float16 nodes it has no kernel for between casts it inserts: the graph, its types and
    // shapes are CUDA's; its rounding is float16's where the CPU has float16 kernels.
    const step = async (activations: 'float32' | 'float16') => {
      const { model, applied } = loadWithDeltas(
        llama,
        { task: 'causal-lm', attention: 'fused', precision: 'float16' },
        parseDeltaConfig({ method: 'lora', r: 4 }),
      );
      const graphs = buildTrainStep({
        forward: model.graph,
        loss: model.loss,
        trainable: applied.trainable,
        activations,
        recompute: recomputeFor('cuda'),
      });
      // lora_B starts at zero, which would leave lora_A's gradient zero: a small start gives both a gradient.
      const initial = Object.fromEntries(
        Object.entries(applied.initial).map(([k, t]) => [
          k,
          k.endsWith('lora_B')
            ? { ...t, data: Float32Array.from({ length: t.data.length }, (_, i) => Math.sin(i) / 20) }
            : t,
        ]),
      );
      const runner = await StepRunner.open(graphs, initial, { inWorker: false, session: { device: 'cpu' } });
      const r = await runner.step([batch(300)], 1e-3, 0);
      await runner.release();
      return r;
    };
    const [full, half] = [await step('float32'), await step('float16')];
    assert.ok(!half.skipped, 'the float16 step is taken');
    assert.ok(Math.abs(half.loss - full.loss) / full.loss < 1e-4, `loss ${half.loss} vs ${full.loss}`);
    assert.ok(
      Math.abs(half.gradNorm - full.gradNorm) / full.gradNorm < 2e-3,
      `gradient norm ${half.gradNorm} vs ${full.gradNorm}`,
    );
  });

  test('memory-bound traffic: fused attention moves well under half the bytes at CUDA settings', () => {
    const traffic = (attention: 'fused' | 'explicit') => memoryTraffic(cudaStep(attention), { batch: 8, seq: 512 });
    const [f, e] = [traffic('fused'), traffic('explicit')];
    assert.ok(f.bytes < 0.45 * e.bytes, `fused ${f.bytes} B vs explicit ${e.bytes} B`);
    // The S²-sized float32 work is gone: no casts of scores, no float32 softmax.
    assert.ok((f.byOp.Cast ?? 0) < 0.1 * e.byOp.Cast, `casts: ${f.byOp.Cast} vs ${e.byOp.Cast}`);
  });

  test("the attention gradient's non-product work over the S² scores: softmax(scores + mask) and one product", () => {
    const step = cudaStep('fused');
    const square = step.nodes.filter((n) => {
      const shape = step.value(n.outputs[0]).shape;
      return shape.length === 4 && shape[2] === 'seq' && shape[3] === 'seq';
    });
    // Per layer: the scores and dO·Vᵀ − rowsum (products), the masked scores, their softmax, P ⊙ (…).
    assert.deepEqual(
      square.map((n) => n.op).sort(),
      [
        'Add',
        'Add',
        'FusedMatMul',
        'FusedMatMul',
        'Mul',
        'Mul',
        'Softmax',
        'Softmax',
        'FusedMatMul',
        'FusedMatMul',
      ].sort(),
    );
    // What onnxruntime's BiasSoftmaxFusion needs to make one CUDA kernel of each Add and Softmax: both of the Add's
    // inputs stated in the model, its result read only by a last-axis Softmax.
    for (const add of square.filter((n) => n.op === 'Add')) {
      for (const i of add.inputs) assert.ok(step.declared.has(i), `${i}'s shape is stated`);
      const readers = step.nodes.filter((n) => n.inputs.includes(add.outputs[0]));
      assert.deepEqual(
        readers.map((n) => [n.op, n.attrs.axis]),
        [['Softmax', -1]],
      );
    }
    const cuda = memoryTraffic(step, { batch: 8, seq: 512 }, { cuda: true });
    const plain = memoryTraffic(step, { batch: 8, seq: 512 });
    const s2 = 8 * 4 * 512 * 512 * 2; // one float16 pass over the scores
    assert.equal(plain.bytes - cuda.bytes, 2 * 2 * s2, 'per layer, the masked scores are neither written nor read');
    assert.equal(plain.kernels - cuda.kernels, 2);
  });

  test('onnxruntime keeps the stated shapes: the masked scores add [batch, heads, seq, seq] and [seq, seq]', async () => {
    const { model, applied } = loadWithDeltas(
      llama,
      { task: 'causal-lm', attention: 'fused' },
      parseDeltaConfig({ method: 'lora', r: 4 }),
    );
    const step = buildTrainStep({
      forward: model.graph,
      loss: model.loss,
      trainable: applied.trainable,
      recompute: recomputeFor('cuda'),
    }).step!;
    const m = serialize(step);
    const file = join(tmp, 'optimized.onnx');
    const s = await ort.InferenceSession.create(Buffer.from(m.bytes), {
      ...ortSessionOptions('cpu', {}, m),
      optimizedModelFilePath: file,
    });
    await s.release();
    // The model onnxruntime optimized (on the CPU; a float16 graph there gets casts the CUDA provider does not add).
    const { graph } = onnxProto.onnx.ModelProto.decode(readFileSync(file));
    const dims = (name: string): string[] | undefined =>
      graph!
        .valueInfo!.find((v) => v.name === name)
        ?.type?.tensorType?.shape?.dim?.map((d) => (d.dimParam ? d.dimParam : String(d.dimValue)));
    const adds = graph!.node!.filter((n) => n.opType === 'Add' && n.name!.includes('MultiHeadAttention'));
    assert.equal(adds.length, 2);
    for (const add of adds) {
      assert.deepEqual(add.input!.map(dims), [
        ['batch', '4', 'seq', 'seq'],
        ['seq', 'seq'],
      ]);
      const readers = graph!.node!.filter((n) => n.input!.includes(add.output![0]));
      assert.deepEqual(
        readers.map((n) => n.opType),
        ['Softmax'],
      );
    }
  });

  test('a soft prompt (virtual tokens in front of each row) fuses: the same loss and real logits as explicit', async () => {
    const run = async (attention: 'fused' | 'explicit') => {
      const { model, applied } = loadWithDeltas(
        llama,
        { task: 'causal-lm', attention },
        parseDeltaConfig({ method: 'soft_prompt', num_virtual_tokens: 3 }),
      );
      assert.equal(model.fusedAttention, attention === 'fused');
      for (const v of applied.trainable) model.graph.promoteToInput(v);
      const prompt = Object.fromEntries(
        applied.trainable.map((p) => {
          const t = applied.initial[p];
          return [p, { ...t, data: Float32Array.from({ length: t.data.length }, (_, i) => Math.sin(i) / 3) }];
        }),
      );
      const s = await openInline(model.graph, { device: 'cpu' });
      const out = await s.run({ ...batch(300), ...prompt });
      await s.release();
      return { loss: f64(out[model.loss])[0], logits: out.logits };
    };
    const [f, e] = [await run('fused'), await run('explicit')];
    assert.ok(Math.abs(f.loss - e.loss) <= 1e-6 * e.loss, `loss ${f.loss} vs ${e.loss}`);
    const mask = f64(batch(300).attention_mask);
    const err = relErr(f.logits, e.logits, (i) => mask[Math.floor(i / 300)] === 1);
    assert.ok(err < 1e-5, `real logits: relative difference ${err}`);
  });

  test('prefix tuning keeps the explicit form (its keys are longer than the queries)', () => {
    const { model } = loadWithDeltas(
      llama,
      { task: 'causal-lm', attention: 'fused' },
      parseDeltaConfig({ method: 'prefix', num_virtual_tokens: 3 }),
    );
    assert.equal(model.fusedAttention, false);
    assert.equal(ops(model, 'MultiHeadAttention'), 0);
  });

  test('fused on CUDA where its kernels run, explicit on the CPU, unless asked', async () => {
    assert.equal(attentionFor('cuda'), 'fused');
    assert.equal(attentionFor('cpu'), 'explicit');
    assert.equal(attentionFor('auto'), 'explicit');
    assert.equal(attentionFor('cpu', 'fused'), 'fused');
    assert.equal(attentionFor('cuda', 'explicit'), 'explicit');
    assert.deepEqual(await chooseAttention('cpu'), { attention: 'explicit' });
    assert.deepEqual(await chooseAttention('cpu', 'fused'), { attention: 'fused' });
    assert.deepEqual(await chooseAttention('cuda', 'explicit'), { attention: 'explicit' });
    // Left to CUDA, the kernels are checked there first: this machine's CUDA cannot run them, and the run says so.
    if (!(await cudaStatus()).usable) {
      const r = await chooseAttention('cuda');
      assert.equal(r.attention, 'explicit');
      assert.match(r.fallback!, /^fused attention does not run on cuda \(.+\)$/);
    }
  });
});

describe('the fused kernels are checked before a run uses them', () => {
  test('on the CPU they run in float16 and agree with attention and its gradients written out', async () => {
    const r = await fusedAttentionOn('cpu');
    assert.equal(r.ok, true, r.reason);
    assert.ok(r.maxError! > 0 && r.maxError! < 1e-3, `${r.maxError}`);
    assert.equal(await fusedAttentionOn('cpu'), r, 'checked once per process');
  });

  test('a kernel that fails, or computes something else, is reported with the reason', async () => {
    const failing = await checkFusedAttention(() => {
      throw new Error('Could not find an implementation for MultiHeadAttention(1) node\nat …');
    });
    assert.deepEqual(failing, { ok: false, reason: 'Could not find an implementation for MultiHeadAttention(1) node' });
    // Attention that is not causal: the real graph, with the flag dropped.
    const bidirectional = await checkFusedAttention(async (g, feeds) => {
      for (const n of g.nodes) if (n.op === 'MultiHeadAttention') n.attrs.unidirectional = 0;
      const s = await openInline(g, { device: 'cpu' });
      try {
        return await s.run(feeds);
      } finally {
        await s.release();
      }
    });
    assert.equal(bidirectional.ok, false);
    assert.match(bidirectional.reason!, /^it differs from attention written out by \d/);
    // The backward pass: a keys' gradient that is off by 0.05 in one place.
    const offGradient = await checkFusedAttention(async (g, feeds) => {
      const s = await openInline(g, { device: 'cpu' });
      try {
        const out = await s.run(feeds);
        (out.dk.data as Float32Array)[5] += 0.05;
        return out;
      } finally {
        await s.release();
      }
    });
    assert.equal(offGradient.ok, false);
    assert.match(offGradient.reason!, /^it differs from the keys' gradient written out by 0\.0[45]/);
    const nan = await checkFusedAttention(async () => ({
      out: { dtype: 'float32', shape: [2, 6, 16], data: new Float32Array(192).fill(NaN) },
    }));
    assert.equal(nan.ok, false);
    assert.equal(nan.maxError, Infinity);
  });
});

describe('fused attention reads no mask', () => {
  test('a left-padded row is refused, naming the row and position', () => {
    const m = (rows: number[][]): HostTensor => ({
      dtype: 'int64',
      shape: [rows.length, rows[0].length],
      data: BigInt64Array.from(rows.flat().map(BigInt)),
    });
    assertRightPadded(
      m([
        [1, 1, 1],
        [1, 1, 0],
        [1, 0, 0],
      ]),
    );
    assert.throws(
      () =>
        assertRightPadded(
          m([
            [1, 1, 1],
            [0, 1, 1],
          ]),
        ),
      /batch row 1: attention_mask has a real token at position 1 after padding; fused attention needs right-padded rows/,
    );
  });

  test('the trainer with fused attention on the CPU: the same run as the explicit form', async () => {
    const backbone = fileURLToPath(new URL('../native/demo/backbone', import.meta.url));
    const { reviews } = await import('../native/demo/corpus.js');
    const rows = reviews(64, 5, 'seen').map((x) => ({ prompt: x.text, completion: x.label ? ' loved' : ' hated' }));
    const run = async (attention: 'fused' | 'explicit') => {
      const dir = mkdtempSync(join(tmp, 'run-'));
      const losses: number[] = [];
      const r = await train(
        {
          model: backbone,
          task: 'causal-lm',
          deltas: [{ method: 'lora', r: 4, alpha: 8 }],
          epochs: 1,
          batchSize: 16,
          lr: 5e-3,
          maxLength: 32,
          seed: 1,
          device: 'cpu',
          runDir: dir,
          attention,
        },
        { train: rows, validation: rows.slice(0, 16) },
        (ev: TrainEvent) => {
          if (ev.type === 'progress') losses.push(ev.loss);
        },
      );
      assert.equal(r.status, 'finished');
      return { losses, metrics: r.metrics };
    };
    const [f, e] = [await run('fused'), await run('explicit')];
    assert.equal(f.losses.length, 4);
    for (const [i, l] of f.losses.entries())
      assert.ok(Math.abs(l - e.losses[i]) <= 1e-5 * e.losses[i], `step ${i}: ${l} vs ${e.losses[i]}`);
    assert.ok(Math.abs(f.metrics.loss - e.metrics.loss) <= 1e-5 * e.metrics.loss, 'validation loss');
  });
});
