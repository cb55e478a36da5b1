import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Graph, type HostTensor } from '../native/onnx/graph.js';
import { Rng } from '../native/rng.js';
import { openSession, runSession } from '../native/runtime/session.js';
import { buildTrainStep, names } from '../native/train/step.js';

// scores = x·W over a [batch, seq, C] input, sliced to the first seq−1 positions (as a causal LM's logits), then
// SoftmaxCrossEntropyLoss with class weights and an ignored label.
const C = 5,
  D = 3;
function model(reduction: 'mean' | 'sum', weights: boolean): { g: Graph; loss: string } {
  const rng = new Rng(4);
  const g = new Graph();
  const x = g.input('x', 'float32', ['batch', 'seq', D]);
  const y = g.input('y', 'int64', ['batch', 'seq']);
  const w = g.initializer('W', {
    dtype: 'float32',
    shape: [D, C],
    data: Float32Array.from({ length: D * C }, () => rng.uniform(-1, 1)),
  });
  const logits = g.op1('MatMul', [x, w]);
  const cut = (v: string, axis: number, end: number) =>
    g.op1('Slice', [
      v,
      g.constant([0], 'int64', [1]),
      g.constant([end], 'int64', [1]),
      g.constant([axis], 'int64', [1]),
    ]);
  const scores = g.op1('Reshape', [cut(logits.name, 1, -1), g.constant([-1, C], 'int64', [2])]);
  const labels = g.op1('Reshape', [cut(y.name, 1, -1), g.constant([-1], 'int64', [1])]);
  const cw = weights ? g.constant([0.5, 1, 2, 1.5, 1], 'float32', [C]) : undefined;
  const loss = g.op1('SoftmaxCrossEntropyLoss', [scores, labels, cw], { reduction, ignore_index: 3 });
  return { g, loss: loss.name };
}

const feeds = (): Record<string, HostTensor> => {
  const rng = new Rng(9);
  return {
    x: { dtype: 'float32', shape: [2, 4, D], data: Float32Array.from({ length: 24 }, () => rng.uniform(-2, 2)) },
    y: { dtype: 'int64', shape: [2, 4], data: BigInt64Array.from([0, 3, 2, 1, 4, 2, 3, 0], BigInt) },
    [names.lr]: { dtype: 'float32', shape: [], data: Float32Array.of(0.1) },
    [names.step]: { dtype: 'int64', shape: [], data: BigInt64Array.of(1n) },
    [names.m('W')]: { dtype: 'float32', shape: [D, C], data: new Float32Array(D * C) },
    [names.v('W')]: { dtype: 'float32', shape: [D, C], data: new Float32Array(D * C) },
  };
};

for (const reduction of ['mean', 'sum'] as const)
  for (const weights of [false, true])
    test(`the step's cross-entropy (${reduction}${weights ? ', class weights' : ''}, ignore_index) is onnxruntime's`, async () => {
      const { g, loss } = model(reduction, weights);
      const reference = g.clone();
      reference.outputs.length = 0;
      reference.output(loss, 'loss');
      const want = await runSession(await openSession(reference, { device: 'cpu' }), feeds());
      const step = buildTrainStep({ forward: g, loss, trainable: ['W'], optimizer: { maxGradNorm: 0 } }).step!;
      // Lowered: no SoftmaxCrossEntropyLoss (onnxruntime would expand it with two transposes of the scores), and the
      // product is computed for the kept rows only (no Slice of the logits).
      assert.equal(step.nodes.filter((n) => n.op === 'SoftmaxCrossEntropyLoss').length, 0);
      const product = step.nodes.find((n) => n.op === 'MatMul' && !n.name.startsWith('grad/'))!;
      assert.deepEqual(step.value(product.outputs[0]).shape, ['batch', 'seq-1', C]);
      const init = g.initializers.get('W')!;
      const W = init.kind === 'host' ? init.tensor : undefined;
      const got = await runSession(await openSession(step, { device: 'cpu' }), { ...feeds(), W: W! });
      const [a, b] = [Number(got[names.loss].data[0]), Number(want.loss.data[0])];
      assert.ok(Math.abs(a - b) <= 1e-6 * Math.abs(b), `${a} vs ${b}`);
    });
