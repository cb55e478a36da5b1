import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import onnxProto from 'onnx-proto';
import { Graph } from '../native/onnx/graph.js';
import { serialize } from '../native/onnx/serialize.js';
import { dimMul, broadcast } from '../native/onnx/shape.js';
import { openInline } from '../native/runtime/host.js';

describe('graph builder', () => {
  test('shapes are inferred with symbolic batch and sequence dims', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 'seq', 8]);
    const w = g.initializer('w', { dtype: 'float32', shape: [8, 6], data: new Float32Array(48) });
    const y = g.op1('MatMul', [x, w]);
    assert.deepEqual(y.shape, ['batch', 'seq', 6]);
    const heads = g.op1('Reshape', [y, g.constant([0, 0, 2, 3], 'int64')]);
    assert.deepEqual(heads.shape, ['batch', 'seq', 2, 3]);
    const flat = g.op1('Reshape', [y, g.constant([-1, 6], 'int64')]);
    assert.deepEqual(flat.shape, ['batch*seq', 6]);
    const t = g.op1('Transpose', [heads], { perm: [0, 2, 1, 3] });
    assert.deepEqual(t.shape, ['batch', 2, 'seq', 3]);
    const scores = g.op1('FusedMatMul', [t, t], { transB: 1 });
    assert.deepEqual(scores.shape, ['batch', 2, 'seq', 'seq']);
    const [a, b] = g.op('Split', [y, g.constant([2, 4], 'int64')], { axis: -1 }, { outputs: 2 });
    assert.deepEqual(
      [a.shape, b.shape],
      [
        ['batch', 'seq', 2],
        ['batch', 'seq', 4],
      ],
    );
    const cat = g.op1('Concat', [g.input('prefix', 'float32', ['batch', 5, 6]), y], { axis: 1 });
    assert.deepEqual(cat.shape, ['batch', '5+seq', 6]);
    const red = g.op1('ReduceMean', [y, g.constant([1], 'int64')], { keepdims: 0 });
    assert.deepEqual(red.shape, ['batch', 6]);
    assert.equal(dimMul('seq', dimMul(4, 'batch')), '4*batch*seq');
  });

  test('bad shapes are errors naming the node and both shapes', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 8]);
    const w = g.initializer('w', { dtype: 'float32', shape: [7, 6], data: new Float32Array(42) });
    assert.throws(() => g.op1('MatMul', [x, w]), /MatMul \(MatMul\): inner dimensions differ: \[batch, 8\] @ \[7, 6\]/);
    assert.throws(
      () => g.op1('Add', [x, g.input('z', 'float32', [3])]),
      /shapes \[batch, 8\] and \[3\] do not broadcast/,
    );
    assert.throws(() => g.op1('Add', [x, g.input('i', 'int64', [8])]), /inputs mix float32 and int64/);
    assert.throws(() => g.op1('NoSuchOp', [x]), /unknown op "NoSuchOp"/);
    assert.throws(() => g.op1('Softmax', [x], { axes: 1 }), /op Softmax has no attribute "axes"/);
    assert.throws(
      () => g.initializer('w2', { dtype: 'float32', shape: [2, 2], data: new Float32Array(3) }),
      /weight "w2": 3 elements for shape \[2, 2\]/,
    );
    assert.throws(
      () =>
        broadcast(
          [
            [2, 3],
            [4, 3],
          ],
          'here',
        ),
      /here: shapes \[2, 3\] and \[4, 3\] do not broadcast \(dim 0: 2 vs 4\)/,
    );
  });

  test('serialised models carry symbolic dims, opsets and attributes that onnxruntime accepts', async () => {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 4]);
    g.output(
      g.op1(
        'FusedMatMul',
        [
          x,
          g.initializer('w', { dtype: 'float32', shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i) }),
        ],
        { transB: 1, alpha: 0.5 },
      ),
      'y',
    );
    const { bytes } = serialize(g);
    const m = onnxProto.onnx.ModelProto.decode(bytes);
    assert.deepEqual(
      m.opsetImport.map((o) => [o.domain, Number(o.version)]),
      [
        ['', 20],
        ['com.microsoft', 1],
      ],
    );
    assert.equal(m.graph!.input![0].type!.tensorType!.shape!.dim![0].dimParam, 'batch');
    const s = await openInline(g, { device: 'cpu' });
    const y = (await s.run({ x: { dtype: 'float32', shape: [2, 4], data: Float32Array.of(1, 0, 0, 0, 0, 1, 0, 0) } }))
      .y;
    assert.deepEqual(Array.from(y.data as Float32Array), [0, 2, 4, 0.5, 2.5, 4.5]);
  });

  test('prune drops nodes and weights no output needs', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', [2]);
    g.op1('Exp', [
      g.op1('Mul', [x, g.initializer('unused', { dtype: 'float32', shape: [2], data: new Float32Array(2) })]),
    ]);
    g.output(g.op1('Tanh', [x]));
    g.prune();
    assert.deepEqual(
      g.nodes.map((n) => n.op),
      ['Tanh'],
    );
    assert.equal(g.initializers.has('unused'), false);
  });
});
