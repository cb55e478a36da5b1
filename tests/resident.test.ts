// Parameters and optimizer state kept where the step runs (the resident-state addon, runtime/resident.ts). On the CPU
// the resident runner runs the same kernels as the host runner, so every loss, gradient norm and parameter must be
// the same to the bit — for one-graph steps, gradient accumulation, float16 activations with loss scaling, and a
// resume from a checkpoint; what crosses to the host each step is only the loss and the gradient norm.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import { reviews } from '../native/demo/corpus.js';
import { TINY, buildTinyLm, permutationTask } from '../native/demo/tiny-lm.js';
import { Rng } from '../native/rng.js';
import { tinyLmSteps } from './support/tiny-steps.js';
import { ortBinFolder } from '../native/runtime/providers.js';
import { ResidentContext, residentSupport } from '../native/runtime/resident.js';
import { ResidentStepRunner, openRunner } from '../native/train/resident-runner.js';
import { StepRunner, type Runner } from '../native/train/runner.js';
import { buildTrainStep } from '../native/train/step.js';
import { train } from '../native/train/trainer.js';

/** Whether onnxruntime's CUDA provider is installed here (it is not on CI). */
const cudaProvider = existsSync(join(ortBinFolder(), 'libonnxruntime_providers_cuda.so'));

test('the addon is built and loads the onnxruntime that onnxruntime-node uses', () => {
  const s = residentSupport();
  assert.equal(s.available, true, s.reason);
  assert.equal(s.version, '1.29.0');
});

function addModel(): Uint8Array {
  const { onnx } = onnxProto;
  const t = (name: string, dims: number[]) => ({
    name,
    type: { tensorType: { elemType: 1, shape: { dim: dims.map((dimValue) => ({ dimValue })) } } },
  });
  return onnx.ModelProto.encode({
    irVersion: 9,
    opsetImport: [{ domain: '', version: 20 }],
    graph: {
      name: 'accumulate',
      node: [
        { opType: 'Add', input: ['p', 'x'], output: ['p_out'] },
        { opType: 'ReduceSum', input: ['p_out'], output: ['total'] },
      ],
      input: [t('p', [3]), t('x', [3])],
      output: [t('p_out', [3]), t('total', [1])],
    },
  }).finish();
}

test('a context: state read and replaced by runs, host outputs back, clear errors', async () => {
  const c = ResidentContext.create('cpu');
  const s = c.open({ bytes: addModel(), inputs: [], weightBytes: 0 } as never);
  c.set('p', { dtype: 'float32', shape: [3], data: Float32Array.of(1, 2, 3) });
  const x = { dtype: 'float32' as const, shape: [3], data: Float32Array.of(10, 20, 30) };
  for (const [total, p] of [
    [66, [11, 22, 33]],
    [126, [21, 42, 63]],
  ] as const) {
    const r = await c.run(s, { x }, { p: 'p' }, { p_out: 'p' }, ['total']);
    assert.deepEqual(Array.from(r.total.data as Float32Array), [total]);
    assert.deepEqual(r.total.shape, [1]);
    assert.deepEqual(Array.from(c.get('p').data as Float32Array), p);
  }
  assert.deepEqual(c.list(), [{ name: 'p', onDevice: false, bytes: 12 }]);
  // A run and a change of state at once: refused, and the run still finishes.
  const running = c.run(s, { x }, { p: 'p' }, { p_out: 'p' }, []);
  assert.throws(() => c.set('p', x), /a run is in progress: state cannot change under it/);
  assert.throws(() => c.run(s, { x }, { p: 'p' }, {}, []), /a run is already in progress/);
  await running;
  assert.deepEqual(Array.from(c.get('p').data as Float32Array), [31, 62, 93]);
  assert.throws(() => c.get('q'), /no state tensor "q"/);
  assert.throws(() => c.run(s, { x }, { p: 'q' }, {}, []), /input "p": no state tensor "q"/);
  assert.throws(
    () => c.set('p', { dtype: 'float32', shape: [4], data: Float32Array.of(1, 2, 3) }),
    /p: 12 bytes of data for 16 bytes of float32/,
  );
  await assert.rejects(
    c.run(s, { x: { dtype: 'float32', shape: [4], data: new Float32Array(4) } }, { p: 'p' }, { p_out: 'p' }, []),
    /x|dimension|shape/i,
  );
  assert.throws(() => c.run(s, { y: x }, { p: 'p' }, {}, []), /y/);
  // A failed run replaces nothing, and the context goes on.
  assert.deepEqual(Array.from(c.get('p').data as Float32Array), [31, 62, 93]);
  const after = await c.run(s, { x }, { p: 'p' }, {}, ['total']);
  assert.deepEqual(Array.from(after.total.data as Float32Array), [246]);
  assert.throws(
    () => c.open({ bytes: Uint8Array.of(1, 2, 3), inputs: [], weightBytes: 0 } as never),
    /protobuf|model/i,
  );
  c.release();
  assert.throws(() => c.get('p'), /released/);
});

test('read back as on CUDA (through the identity graph): the same values, and the state marked as on the device', async () => {
  const c = ResidentContext.create('cpu', {}, { readBack: 'identity' });
  const s = c.open({ bytes: addModel(), inputs: [], weightBytes: 0 } as never);
  c.set('p', { dtype: 'float32', shape: [3], data: Float32Array.of(1, 2, 3) });
  assert.deepEqual(c.list(), [{ name: 'p', onDevice: false, bytes: 12 }]);
  const x = { dtype: 'float32' as const, shape: [3], data: Float32Array.of(0.5, -2, 4) };
  await c.run(s, { x }, { p: 'p' }, { p_out: 'p' }, []);
  assert.deepEqual(c.list(), [{ name: 'p', onDevice: true, bytes: 12 }]);
  const back = c.get('p');
  assert.deepEqual([back.dtype, back.shape, Array.from(back.data as Float32Array)], ['float32', [3], [1.5, 0, 7]]);
  c.release();
});

test('a CUDA context where the CUDA provider is missing: onnxruntime says so, nothing crashes', () => {
  if (cudaProvider)
    assert.ok(ResidentContext.create('cuda'), 'the CUDA provider is installed here: the context is made');
  else assert.throws(() => ResidentContext.create('cuda'), /libonnxruntime_providers_shared\.so|CUDA/);
});

test(
  "'auto' on CUDA: a resident runner that cannot start gives way to the host path, saying why",
  // Where the provider is installed nothing fails to start: the test is reported skipped there, not passed.
  { skip: cudaProvider && 'the CUDA provider is installed here' },
  async () => {
    const m = buildTinyLm(TINY);
    const graphs = buildTrainStep({ forward: m.graph, loss: m.loss, trainable: m.trainable });
    const said: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (said.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      // The host path then asks for CUDA too, and says it cannot be used here.
      await assert.rejects(
        openRunner(graphs, m.weights, 'cuda', { resident: 'auto', inWorker: false }),
        /CUDA was requested but cannot be used/,
      );
    } finally {
      process.stderr.write = write;
    }
    assert.match(
      said.join(''),
      /state on the device could not start \(.*libonnxruntime_providers_shared.*\); it is fed from the host/,
    );
  },
);

async function tinySteps(runner: Runner, steps: number, accumulation: number) {
  const task = permutationTask(TINY, 5);
  const rng = new Rng(3);
  const out: [number, number][] = [];
  for (let i = 0; i < steps; i++) {
    const micro = Array.from({ length: accumulation }, () => task(8, rng));
    const r = await runner.step(micro, 0.03, i);
    out.push([r.loss, r.gradNorm]);
  }
  return out;
}

for (const [accumulation, activations] of [
  [1, 'float32'],
  [3, 'float32'],
  [1, 'float16'],
] as const)
  test(`the resident runner equals the host runner to the bit (accumulation ${accumulation}, ${activations} activations)`, async () => {
    const { m, graphs } = tinyLmSteps({ ...TINY, dropout: 0.1 }, { accumulation, activations });
    const host = await StepRunner.open(graphs, m.weights, { inWorker: false });
    const resident = await openRunner(graphs, m.weights, 'cpu', { resident: 'on' });
    assert.ok(resident instanceof ResidentStepRunner);
    const a = await tinySteps(host, 6, accumulation);
    // Steps send the batch and scalars only: nothing of the state is set from the host (gradient sums included).
    const set = ResidentContext.prototype.set;
    let uploads = 0;
    ResidentContext.prototype.set = function (this: ResidentContext, ...args: Parameters<typeof set>) {
      uploads++;
      return set.apply(this, args);
    };
    let b;
    try {
      b = await tinySteps(resident, 6, accumulation);
    } finally {
      ResidentContext.prototype.set = set;
    }
    assert.equal(uploads, 0, 'state tensors set from the host during steps');
    assert.deepEqual(b, a);
    for (const k of ['params', 'm', 'v'] as const)
      for (const p of m.trainable)
        assert.deepEqual(Array.from(resident[k][p].data as Float32Array), Array.from(host[k][p].data as Float32Array));
    assert.equal(resident.t, host.t);
    assert.equal(resident.lossScale, host.lossScale);
    // The state: each parameter and both moments (and the gradient sums with accumulation), nothing else.
    const names = (resident as ResidentStepRunner).state().map((s) => s.name);
    assert.equal(names.length, m.trainable.length * (accumulation > 1 ? 4 : 3));
    // A checkpoint's state restored into a fresh resident runner continues as the host runner does.
    const again = await openRunner(graphs, m.weights, 'cpu', { resident: 'on' });
    again.restore({ step: host.t, params: host.params, m: host.m, v: host.v });
    assert.deepEqual(await tinySteps(again, 2, accumulation), await tinySteps(host, 2, accumulation));
    assert.throws(
      () =>
        again.restore({
          step: 1,
          params: { [m.trainable[0]]: { dtype: 'float32', shape: [1], data: new Float32Array(1) } },
          m: {},
          v: {},
        }),
      /checkpoint parameter of ".*" has shape \[1\], the model's is/,
    );
    for (const r of [host, resident, again]) await r.release();
  });

test('train with resident state: the same losses, metrics and delta file as without', async () => {
  const backbone = fileURLToPath(new URL('../native/demo/backbone', import.meta.url));
  const lab = (xs: { text: string; label: number }[]) =>
    xs.map((x) => ({ text: x.text, label: x.label ? 'positive' : 'negative' }));
  const data = { train: lab(reviews(96, 7, 'seen')), validation: lab(reviews(48, 8, 'unseen')) };
  const run = async (resident: 'on' | 'off') => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-resident-'));
    const losses: number[] = [];
    const r = await train(
      {
        model: backbone,
        task: 'classification',
        labels: ['negative', 'positive'],
        deltas: [{ method: 'lora', r: 4, alpha: 8 }, { method: 'bitfit' }],
        epochs: 2,
        batchSize: 16,
        accumulation: 2,
        lr: 5e-3,
        maxLength: 24,
        seed: 1,
        evalEvery: 3,
        device: 'cpu',
        runDir: dir,
        resident,
      },
      data,
      (e) => {
        if (e.type === 'progress') losses.push(e.loss);
      },
    );
    const delta = readFileSync(r.deltaFile);
    rmSync(dir, { recursive: true });
    return { losses, metrics: r.metrics, delta };
  };
  const host = await run('off');
  // The state crosses to the host only when something needs it (evaluation, the saved delta), not every step.
  const getter = Object.getOwnPropertyDescriptor(ResidentStepRunner.prototype, 'params')!;
  let reads = 0;
  Object.defineProperty(ResidentStepRunner.prototype, 'params', {
    ...getter,
    get(this: ResidentStepRunner) {
      reads++;
      return getter.get!.call(this);
    },
  });
  let resident: Awaited<ReturnType<typeof run>>;
  try {
    resident = await run('on');
  } finally {
    Object.defineProperty(ResidentStepRunner.prototype, 'params', getter);
  }
  assert.ok(reads > 0 && reads < 6, `the parameters were read ${reads} times in 6 steps`);
  assert.equal(resident.losses.length, 6);
  assert.deepEqual(resident.losses, host.losses);
  assert.deepEqual(resident.metrics, host.metrics);
  assert.ok(resident.delta.equals(host.delta), 'the delta files are the same bytes');
});
