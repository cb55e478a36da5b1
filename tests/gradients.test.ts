import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildGradients, NoGradientRuleError } from '../native/autodiff/backward.js';
import { narrowSource } from '../native/autodiff/emit.js';
import { GRAD_CASES } from '../native/autodiff/cases.js';
import { checkCase, TOL32, TOL64 } from '../native/autodiff/gradcheck.js';
import { RULES } from '../native/autodiff/registry.js';
import { DTYPES } from '../native/onnx/dtype.js';
import { Graph } from '../native/onnx/graph.js';

describe('every gradient rule matches float64 finite differences', () => {
  test('each rule has at least one check case', () => {
    const missing = [...RULES.keys()].filter((k) => !GRAD_CASES.some((c) => c.rule === k));
    assert.deepEqual(missing, []);
    for (const op of [
      'MatMul',
      'Gemm',
      'com.microsoft.FusedMatMul',
      'Add',
      'Sub',
      'Mul',
      'Div',
      'Neg',
      'Pow',
      'Sqrt',
      'Exp',
      'Log',
      'Tanh',
      'Erf',
      'Sigmoid',
      'Relu',
      'Gelu',
      'com.microsoft.QuickGelu',
      'Softmax',
      'LogSoftmax',
      'LayerNormalization',
      'SimplifiedLayerNormalization',
      'ReduceSum',
      'ReduceMean',
      'Reshape',
      'Transpose',
      'Squeeze',
      'Unsqueeze',
      'Expand',
      'Concat',
      'Split',
      'Slice',
      'Gather',
      'Where',
      'Cast',
      'Identity',
      'Dropout',
      'SoftmaxCrossEntropyLoss',
    ]) {
      assert.ok(RULES.has(op), `rule for ${op}`);
    }
  });
  for (const c of GRAD_CASES) {
    test(`${c.rule}: ${c.label}`, async () => {
      const r = await checkCase(c, 'cpu');
      assert.equal(r.error, undefined);
      assert.ok(r.err32 <= TOL32, `float32 gradient relative error ${r.err32} > ${TOL32}`);
      if (!c.reference64) {
        assert.ok(r.err64 !== undefined, 'float64 gradient was checked');
        assert.ok(r.err64 <= TOL64, `float64 gradient relative error ${r.err64} > ${TOL64}`);
      }
    });
  }
});

describe('the reverse walk', () => {
  test('an op without a rule on a gradient path is an error naming the op, the node and the parameter', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', [3]);
    const w = g.input('lora_A', 'float32', [3]);
    const y = g.op1('Sin', [g.op1('Mul', [x, w])]);
    const loss = g.op1('ReduceSum', [y], { keepdims: 0 });
    assert.throws(
      () => buildGradients(g, { loss: loss.name, wrt: ['lora_A'] }),
      (e: Error) => {
        assert.ok(e instanceof NoGradientRuleError);
        assert.match(e.message, /no gradient rule for op Sin \(node "Sin"\)/);
        assert.match(e.message, /parameter "lora_A"/);
        return true;
      },
    );
  });

  test('an op without a rule off the gradient path is fine', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', [3]);
    const w = g.input('w', 'float32', [3]);
    const frozenBranch = g.op1('Sin', [x]);
    const loss = g.op1('ReduceSum', [g.op1('Mul', [frozenBranch, w])], { keepdims: 0 });
    const grads = buildGradients(g, { loss: loss.name, wrt: ['w'] });
    assert.equal(grads.size, 1);
  });

  test('frozen weights get no gradient work and are never transposed', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 'seq', 8]);
    const W = g.initializer('W', { dtype: 'float32', shape: [8, 16], data: new Float32Array(128) });
    const A = g.input('A', 'float32', [16, 4]);
    const h = g.op1('MatMul', [g.op1('MatMul', [x, W]), A]);
    const loss = g.op1('ReduceSum', [h], { keepdims: 0 });
    const before = g.nodes.length;
    buildGradients(g, { loss: loss.name, wrt: ['A'] });
    const added = g.nodes.slice(before);
    // Only A's gradient: one Gemm over the flattened batch; nothing reads W, nothing flows into x.
    assert.ok(
      added.every((n) => !n.inputs.includes('W')),
      'no gradient node reads the frozen weight',
    );
    assert.equal(added.filter((n) => n.op === 'Gemm').length, 1);
    assert.equal(added.filter((n) => n.op === 'Transpose').length, 0);
  });

  test('an input gradient through a frozen weight folds the transpose into the product', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 8]);
    const W = g.initializer('W', { dtype: 'float32', shape: [8, 16], data: new Float32Array(128) });
    const B = g.input('B', 'float32', [8]);
    const loss = g.op1('ReduceSum', [g.op1('MatMul', [g.op1('Add', [x, B]), W])], { keepdims: 0 });
    const before = g.nodes.length;
    buildGradients(g, { loss: loss.name, wrt: ['B'] });
    const readers = g.nodes.slice(before).filter((n) => n.inputs.includes('W'));
    assert.equal(readers.length, 1);
    assert.equal(readers[0].op, 'FusedMatMul');
    assert.equal(readers[0].attrs.transB, 1);
    assert.equal(g.nodes.filter((n) => n.op === 'Transpose').length, 0);
  });

  test('gradients of paths that meet are summed once', () => {
    const g = new Graph();
    const w = g.input('w', 'float32', [4]);
    const a = g.op1('Exp', [w]);
    const b = g.op1('Tanh', [w]);
    const c = g.op1('Mul', [w, w]);
    const loss = g.op1('ReduceSum', [g.op1('Sum', [a, b, c])], { keepdims: 0 });
    const grads = buildGradients(g, { loss: loss.name, wrt: ['w'] });
    const sum = g.nodes.find((n) => n.outputs[0] === grads.get('w')!.name)!;
    assert.equal(sum.op, 'Sum');
    assert.equal(sum.inputs.length, 4); // exp, tanh, and both sides of w·w
  });

  test('a parameter that does not reach the loss is named', () => {
    const g = new Graph();
    const w = g.input('w', 'float32', [4]);
    g.input('unused', 'float32', [4]);
    const loss = g.op1('ReduceSum', [w], { keepdims: 0 });
    assert.throws(
      () => buildGradients(g, { loss: loss.name, wrt: ['w', 'unused'] }),
      /parameter "unused" does not affect loss/,
    );
  });

  test('a non-scalar loss is refused', () => {
    const g = new Graph();
    const w = g.input('w', 'float32', [4]);
    const y = g.op1('Exp', [w]);
    assert.throws(() => buildGradients(g, { loss: y.name, wrt: ['w'] }), /must be a float scalar, got float32\[4\]/);
  });
});

describe('narrowSource: a float32 copy of a float16 value is that value again', () => {
  test('through a cast up and views it is found, reshaped; a cast down or another op is not undone', () => {
    const g = new Graph();
    const h = g.input('h', 'float16', [2, 3, 4]);
    const wide = g.op1('Cast', [h], { to: DTYPES.float32.onnx });
    const flat = g.op1('Reshape', [wide, g.constant([6, 4], 'int64', [2])]);
    const back = narrowSource(g, flat, 'float16')!;
    assert.equal(back.dtype, 'float16');
    assert.deepEqual(back.shape, [6, 4]);
    assert.equal(g.nodes.find((n) => n.outputs.includes(back.name))!.inputs[0], 'h', 'a reshape of h itself');
    assert.equal(narrowSource(g, wide, 'float16'), h);
    assert.equal(narrowSource(g, wide, 'bfloat16'), undefined, 'h is not bfloat16');
    // Rounding down loses bits: float32 → float16 → float32 is not the float32 value.
    const x = g.input('x', 'float32', [4]);
    const down = g.op1('Cast', [x], { to: DTYPES.float16.onnx });
    assert.equal(narrowSource(g, down, 'float32'), undefined);
    // An op between the cast and the value: not a copy.
    const scaled = g.op1('Mul', [wide, g.constant(2, 'float32', [])]);
    assert.equal(narrowSource(g, scaled, 'float16'), undefined);
  });
});
