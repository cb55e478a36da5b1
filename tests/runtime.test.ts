import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Graph, type HostTensor } from '../native/onnx/graph.js';
import { openInline, openInWorker } from '../native/runtime/host.js';
import { cudaStatus, providersPresent } from '../native/runtime/providers.js';
import { openSession } from '../native/runtime/session.js';

function chain(n: number, depth: number): Graph {
  const g = new Graph();
  let x = g.input('x', 'float32', [n, n]);
  for (let i = 0; i < depth; i++) x = g.op1('Tanh', [g.op1('MatMul', [x, x])]);
  g.output(x, 'y');
  return g;
}

describe('sessions', () => {
  test('device auto falls back to CPU with the reason recorded when CUDA cannot be used', async (t) => {
    const st = await cudaStatus();
    if (st.usable) {
      t.diagnostic('CUDA is usable on this machine: auto picks it');
      const s = await openSession(chain(4, 1), { device: 'auto' });
      assert.equal(s.device, 'cuda');
      return;
    }
    const s = await openSession(chain(4, 1), { device: 'auto' });
    assert.equal(s.device, 'cpu');
    assert.equal(s.fallbackReason, st.reason);
    assert.match(s.fallbackReason!, /CUDA provider|NVIDIA|failed to load/);
    await assert.rejects(openSession(chain(4, 1), { device: 'cuda' }), /CUDA was requested but cannot be used: /);
    assert.deepEqual(providersPresent().includes('cuda'), st.providerFiles);
  });

  test('a session in a worker gives the same numbers as one in this thread', async () => {
    const g = chain(16, 3);
    const x: HostTensor = {
      dtype: 'float32',
      shape: [16, 16],
      data: Float32Array.from({ length: 256 }, (_, i) => Math.sin(i) / 8),
    };
    const a = await openInline(g, { device: 'cpu' });
    const b = await openInWorker(g, { device: 'cpu' });
    const ya = (await a.run({ x })).y,
      yb = (await b.run({ x })).y;
    assert.deepEqual(yb.shape, [16, 16]);
    assert.deepEqual(Array.from(yb.data as Float32Array), Array.from(ya.data as Float32Array));
    await a.release();
    await b.release();
  });

  test('run() in a worker leaves this thread responsive; in this thread it blocks it', async () => {
    // Long enough (~0.3 s) that a responsive thread fires many timers even on a busy 2-core machine.
    const g = chain(384, 96);
    const x: HostTensor = {
      dtype: 'float32',
      shape: [384, 384],
      data: Float32Array.from({ length: 384 * 384 }, (_, i) => Math.cos(i) / 64),
    };
    const ticksDuring = async (run: () => Promise<unknown>): Promise<number> => {
      let ticks = 0,
        done = false;
      const spin = (): void => {
        if (!done) {
          ticks++;
          setTimeout(spin, 0);
        }
      };
      setTimeout(spin, 0);
      await run();
      done = true;
      return ticks;
    };
    const inWorker = await openInWorker(g, { device: 'cpu', threads: 1 });
    await inWorker.run({ x });
    const workerTicks = await ticksDuring(() => inWorker.run({ x }));
    const inline = await openInline(g, { device: 'cpu', threads: 1 });
    await inline.run({ x });
    const inlineTicks = await ticksDuring(() => inline.run({ x }));
    assert.ok(workerTicks > 5, `timers fired ${workerTicks} times while the worker ran`);
    assert.ok(inlineTicks <= 1, `timers fired ${inlineTicks} times while this thread ran`);
    await inWorker.release();
    await inline.release();
  });

  test('bad feeds are named before onnxruntime sees the call, in this thread and in a worker', async (t) => {
    const g = new Graph();
    const ids = g.input('ids', 'int64', ['batch', 'seq']);
    const mask = g.input('mask', 'float32', ['batch', 'seq']);
    const x = g.input('x', 'float32', [4]);
    g.output(g.op1('Add', [g.op1('Cast', [ids], { to: 1 }), mask]), 'y');
    g.output(g.op1('Neg', [x]), 'z');
    const ok = {
      ids: { dtype: 'int64' as const, shape: [2, 3], data: new BigInt64Array(6) },
      mask: { dtype: 'float32' as const, shape: [2, 3], data: new Float32Array(6) },
      x: { dtype: 'float32' as const, shape: [4], data: new Float32Array(4) },
    };
    for (const s of [await openInline(g, { device: 'cpu' }), await openInWorker(g, { device: 'cpu' })]) {
      t.after(() => s.release());
      assert.deepEqual((await s.run(ok)).y.shape, [2, 3]);
      await assert.rejects(s.run({ ...ok, x: undefined as never }), /missing input "x"/);
      await assert.rejects(
        s.run({ ...ok, ids: { dtype: 'int32', shape: [2, 3], data: new Int32Array(6) } }),
        /input "ids": got int32, expected int64/,
      );
      await assert.rejects(
        s.run({ ...ok, x: { dtype: 'float32', shape: [5], data: new Float32Array(5) } }),
        /input "x": got shape \[5\], expected \[4\] \(dim 0\)/,
      );
      await assert.rejects(
        s.run({ ...ok, mask: { dtype: 'float32', shape: [2, 4], data: new Float32Array(8) } }),
        /input "mask": dim 1 \(seq\) is 4, but "ids" gave seq = 3/,
      );
      await assert.rejects(
        s.run({ ...ok, x: { dtype: 'float32', shape: [4], data: new Float32Array(3) } }),
        /input "x": 3 elements for shape \[4\]/,
      );
    }
  });
});
