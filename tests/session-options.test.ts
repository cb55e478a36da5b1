import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { Graph } from '../native/onnx/graph.js';
import { serialize } from '../native/onnx/serialize.js';
import { cudaOptions, openSession, ortSessionOptions, runSession } from '../native/runtime/session.js';

function tiny(): Graph {
  const g = new Graph();
  const x = g.input('x', 'float32', ['batch', 3]);
  g.output(g.op1('Relu', [g.op1('MatMul', [x, g.constant([1, 2, 3, 4, 5, 6], 'float32', [3, 2])])]), 'y');
  return g;
}

test('CUDA sessions: device 0, no memory pattern, weights outside the arena', () => {
  const o = ortSessionOptions('cuda', {}, { weightBytes: 10, externalFolder: '/models/m' });
  assert.deepEqual(o.executionProviders, [{ name: 'cuda', deviceId: 0 }]);
  assert.equal(o.enableMemPattern, false);
  assert.equal(o.graphOptimizationLevel, 'all');
  assert.deepEqual(o.extra, {
    session: {
      model_external_initializers_file_folder_path: '/models/m',
      use_device_allocator_for_initializers: '1',
    },
  });
  // The memory pattern can still be asked for (to compare on the GPU).
  assert.equal(ortSessionOptions('cuda', { memPattern: true }, { weightBytes: 0 }).enableMemPattern, true);
  assert.deepEqual(cudaOptions().executionProviders, [{ name: 'cuda', deviceId: 0 }]);
});

test("CPU sessions keep onnxruntime's defaults unless told", () => {
  const o = ortSessionOptions('cpu', {}, { weightBytes: 10 });
  assert.deepEqual(o.executionProviders, ['cpu']);
  assert.equal(o.enableMemPattern, true);
  assert.equal(o.enableCpuMemArena, true);
  assert.equal(o.enableProfiling, undefined);
  assert.deepEqual(o.extra, { session: {} });
  const lean = ortSessionOptions('cpu', { memPattern: false, cpuArena: false, threads: 2 }, { weightBytes: 1 << 30 });
  assert.equal(lean.enableMemPattern, false);
  assert.equal(lean.enableCpuMemArena, false);
  assert.equal(lean.intraOpNumThreads, 2);
  assert.deepEqual(lean.extra, { session: { disable_prepacking: '1' } });
  const prof = ortSessionOptions('cpu', { profileFilePrefix: '/tmp/p' }, { weightBytes: 0 });
  assert.equal(prof.enableProfiling, true);
  assert.equal(prof.profileFilePrefix, '/tmp/p');
});

test("onnxruntime-node accepts the CUDA session's settings (on the CPU provider, which ignores the CUDA ones)", async () => {
  const m = serialize(tiny());
  const o = ortSessionOptions('cuda', {}, m);
  const s = await ort.InferenceSession.create(m.bytes, { ...o, executionProviders: ['cpu'] });
  const out = await s.run({ x: new ort.Tensor('float32', Float32Array.of(1, -1, 1), [1, 3]) });
  assert.deepEqual(Array.from(out.y.data as Float32Array), [3, 4]);
  await s.release();
  const opened = await openSession(tiny(), { device: 'cpu', memPattern: false, cpuArena: false });
  const y = await runSession(opened, {
    x: { dtype: 'float32', shape: [2, 3], data: Float32Array.of(1, 0, 0, 0, 0, 1) },
  });
  assert.deepEqual(Array.from(y.y.data as Float32Array), [1, 2, 5, 6]);
  await opened.session.release();
});

test('TF32 off is NVIDIA_TF32_OVERRIDE=0, set before CUDA is probed (the binding cannot pass use_tf32)', async () => {
  const before = process.env.NVIDIA_TF32_OVERRIDE;
  delete process.env.NVIDIA_TF32_OVERRIDE;
  try {
    const s = await openSession(tiny(), { device: 'cpu', tf32: false });
    assert.equal(process.env.NVIDIA_TF32_OVERRIDE, undefined, 'a CPU session leaves it alone');
    await s.session.release();
    const a = await openSession(tiny(), { device: 'auto', tf32: false });
    assert.equal(process.env.NVIDIA_TF32_OVERRIDE, '0');
    await a.session.release();
  } finally {
    if (before === undefined) delete process.env.NVIDIA_TF32_OVERRIDE;
    else process.env.NVIDIA_TF32_OVERRIDE = before;
  }
});
