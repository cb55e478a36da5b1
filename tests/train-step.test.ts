import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Graph, type HostTensor } from '../native/onnx/graph.js';
import { openInline } from '../native/runtime/host.js';
import { Rng } from '../native/rng.js';
import { seededUniform } from '../native/train/dropout.js';
import { StepRunner } from '../native/train/runner.js';
import { buildTrainStep, type AdamWConfig } from '../native/train/step.js';

// Least squares y = x·W + b against targets t, loss = mean((y − t)²): gradients known in closed form.
const N = 4,
  I = 3,
  O = 2;
function problem(): { g: Graph; loss: string; W0: number[]; b0: number[] } {
  const g = new Graph();
  const x = g.input('x', 'float32', ['batch', I]);
  const t = g.input('t', 'float32', ['batch', O]);
  const rng = new Rng(11);
  const W0 = Array.from({ length: I * O }, () => rng.uniform(-1, 1));
  const b0 = Array.from({ length: O }, () => rng.uniform(-1, 1));
  const W = g.initializer('W', { dtype: 'float32', shape: [I, O], data: Float32Array.from(W0) });
  const b = g.initializer('b', { dtype: 'float32', shape: [O], data: Float32Array.from(b0) });
  const r = g.op1('Sub', [g.op1('Add', [g.op1('MatMul', [x, W]), b]), t]);
  const loss = g.op1('ReduceMean', [g.op1('Mul', [r, r])], { keepdims: 0 });
  return { g, loss: loss.name, W0, b0 };
}

function batch(seed: number, n = N): { x: number[]; t: number[] } {
  const rng = new Rng(seed);
  return {
    x: Array.from({ length: n * I }, () => rng.uniform(-1, 1)),
    t: Array.from({ length: n * O }, () => rng.uniform(-1, 1)),
  };
}

const feeds = (b: { x: number[]; t: number[] }, n = N): Record<string, HostTensor> => ({
  x: { dtype: 'float32', shape: [n, I], data: Float32Array.from(b.x) },
  t: { dtype: 'float32', shape: [n, O], data: Float32Array.from(b.t) },
});

/** torch.optim.AdamW + clip_grad_norm_, in float64. */
function reference(
  W: number[],
  bias: number[],
  batches: { x: number[]; t: number[] }[][],
  lr: number,
  cfg: Required<Omit<AdamWConfig, 'groups'>>,
  wdBias = 0,
) {
  const p = [W.slice(), bias.slice()];
  const m = [W.map(() => 0), bias.map(() => 0)],
    v = [W.map(() => 0), bias.map(() => 0)];
  const norms: number[] = [];
  batches.forEach((micro, step) => {
    const gW = W.map(() => 0),
      gb = bias.map(() => 0);
    for (const bt of micro) {
      const n = bt.x.length / I;
      for (let r = 0; r < n; r++)
        for (let o = 0; o < O; o++) {
          let y = p[1][o];
          for (let i = 0; i < I; i++) y += bt.x[r * I + i] * p[0][i * O + o];
          const d = (2 * (y - bt.t[r * O + o])) / (n * O) / micro.length;
          gb[o] += d;
          for (let i = 0; i < I; i++) gW[i * O + o] += d * bt.x[r * I + i];
        }
    }
    const grads = [gW, gb];
    const norm = Math.sqrt(grads.flat().reduce((a, x) => a + x * x, 0));
    norms.push(norm);
    const coef = cfg.maxGradNorm > 0 ? Math.min(1, cfg.maxGradNorm / (norm + 1e-6)) : 1;
    const t = step + 1;
    [0, 1].forEach((k) => {
      const wd = k === 0 ? cfg.weightDecay : wdBias;
      for (let j = 0; j < p[k].length; j++) {
        const gr = grads[k][j] * coef;
        p[k][j] *= 1 - lr * wd;
        m[k][j] = cfg.beta1 * m[k][j] + (1 - cfg.beta1) * gr;
        v[k][j] = cfg.beta2 * v[k][j] + (1 - cfg.beta2) * gr * gr;
        const denom = Math.sqrt(v[k][j]) / Math.sqrt(1 - cfg.beta2 ** t) + cfg.eps;
        p[k][j] -= (lr / (1 - cfg.beta1 ** t)) * (m[k][j] / denom);
      }
    });
  });
  return { W: p[0], b: p[1], norms };
}

function close(actual: ArrayLike<number>, expected: number[], tol: number, what: string): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tol * Math.max(1, Math.abs(expected[i])),
      `${what}[${i}]: ${actual[i]} vs ${expected[i]}`,
    );
  }
}

describe('training step graph: clipping and AdamW', () => {
  const cfg = { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 0.5 };

  /** Five steps of `graphs` from W0, b0, checked against the float64 reference (the bias decayed by `wdBias`). */
  async function fiveSteps(graphs: ReturnType<typeof buildTrainStep>, W0: number[], b0: number[], wdBias: number) {
    const runner = await StepRunner.open(
      graphs,
      {
        W: { dtype: 'float32', shape: [I, O], data: Float32Array.from(W0) },
        b: { dtype: 'float32', shape: [O], data: Float32Array.from(b0) },
      },
      { inWorker: false },
    );
    const bs = [1, 2, 3, 4, 5].map((s) => [batch(s)]);
    const norms: number[] = [];
    for (const b of bs) norms.push((await runner.step([feeds(b[0])], 0.05)).gradNorm);
    const ref = reference(W0, b0, bs, 0.05, cfg, wdBias);
    close(runner.params.W.data as Float32Array, ref.W, 2e-6, 'W');
    close(runner.params.b.data as Float32Array, ref.b, 2e-6, 'b');
    close(norms, ref.norms, 1e-5, 'grad norm');
    return { runner, ref };
  }

  test('five steps equal torch-style AdamW with global-norm clipping and no decay on the bias', async () => {
    const { g, loss, W0, b0 } = problem();
    const graphs = buildTrainStep({ forward: g, loss, trainable: ['W', 'b'], optimizer: cfg });
    assert.deepEqual(graphs.weightDecay, { W: 0.1, b: 0 });
    const { runner, ref } = await fiveSteps(graphs, W0, b0, 0);
    assert.ok(ref.norms[0] > cfg.maxGradNorm, 'the first step was clipped');
    assert.equal(runner.t, 5);
    await runner.release();
  });

  test('parameters that share a weight decay are updated as one flat vector, with the same result', async () => {
    const { g, loss, W0, b0 } = problem();
    const graphs = buildTrainStep({
      forward: g,
      loss,
      trainable: ['W', 'b'],
      optimizer: { ...cfg, groups: [{ pattern: '^b$', weightDecay: 0.1 }] },
    });
    // One bucket: concatenated in, one update, split back out (a Split for the parameters and each moment).
    const optimizer = graphs.step!.nodes.filter((n) => n.name.startsWith('optimizer/'));
    assert.equal(optimizer.filter((n) => n.op === 'Split').length, 3);
    assert.equal(optimizer.filter((n) => n.op === 'ReduceSumSquare').length, 1);
    const { runner } = await fiveSteps(graphs, W0, b0, 0.1);
    assert.deepEqual(runner.params.W.shape, [I, O]);
    assert.deepEqual(runner.m.b.shape, [O]);
    await runner.release();
  });

  test("decay groups: the first matching pattern sets a parameter's weight decay", () => {
    const { g, loss } = problem();
    const graphs = buildTrainStep({
      forward: g,
      loss,
      trainable: ['W', 'b'],
      optimizer: {
        weightDecay: 0.1,
        groups: [
          { pattern: '^W$', weightDecay: 0 },
          { pattern: '^b', weightDecay: 0.3 },
        ],
      },
    });
    assert.deepEqual(graphs.weightDecay, { W: 0, b: 0.3 });
  });

  test('gradient accumulation over two micro-batches equals one batch of both', async () => {
    const { g, loss, W0, b0 } = problem();
    const init = {
      W: { dtype: 'float32' as const, shape: [I, O], data: Float32Array.from(W0) },
      b: { dtype: 'float32' as const, shape: [O], data: Float32Array.from(b0) },
    };
    const acc = await StepRunner.open(
      buildTrainStep({ forward: g, loss, trainable: ['W', 'b'], optimizer: cfg, accumulation: 2 }),
      init,
      { inWorker: false },
    );
    const whole = await StepRunner.open(
      buildTrainStep({ forward: g, loss, trainable: ['W', 'b'], optimizer: cfg }),
      init,
      { inWorker: false },
    );
    for (let s = 0; s < 3; s++) {
      const a = batch(10 + s),
        b = batch(20 + s);
      const r1 = await acc.step([feeds(a), feeds(b)], 0.05);
      const r2 = await whole.step([feeds({ x: [...a.x, ...b.x], t: [...a.t, ...b.t] }, 2 * N)], 0.05);
      assert.ok(Math.abs(r1.loss - r2.loss) < 1e-6, `loss ${r1.loss} vs ${r2.loss}`);
      assert.ok(Math.abs(r1.gradNorm - r2.gradNorm) < 1e-6, `grad norm ${r1.gradNorm} vs ${r2.gradNorm}`);
    }
    close(acc.params.W.data as Float32Array, Array.from(whole.params.W.data as Float32Array), 1e-6, 'W');
    close(acc.params.b.data as Float32Array, Array.from(whole.params.b.data as Float32Array), 1e-6, 'b');
    await acc.release();
    await whole.release();
  });

  test('a trainable parameter that is not in the graph, or listed twice, is refused', () => {
    const { g, loss } = problem();
    assert.throws(
      () => buildTrainStep({ forward: g, loss, trainable: ['W', 'nope'] }),
      /trainable parameter "nope" is not in the graph/,
    );
    assert.throws(() => buildTrainStep({ forward: g, loss, trainable: ['W', 'W'] }), /listed twice/);
    assert.throws(() => buildTrainStep({ forward: g, loss, trainable: ['W'], accumulation: 0 }), /positive integer/);
  });
});

describe('seeded dropout', () => {
  async function draw(seed: number, n = 20000): Promise<Float32Array> {
    const g = new Graph();
    const x = g.input('x', 'float32', ['n']);
    const s = g.input('seed', 'int64', []);
    g.output(seededUniform(g, x, s, 1234), 'u');
    const sess = await openInline(g, { device: 'cpu' });
    const out = await sess.run({
      x: { dtype: 'float32', shape: [n], data: new Float32Array(n) },
      seed: { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(seed)) },
    });
    return out.u.data as Float32Array;
  }

  test('draws are uniform on [0, 1), a function of the seed only', async () => {
    const a = await draw(7),
      b = await draw(7),
      c = await draw(8);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
    assert.ok(a.every((v) => v >= 0 && v < 1));
    const below = a.filter((v) => v < 0.1).length / a.length;
    assert.ok(Math.abs(below - 0.1) < 0.01, `P(u < 0.1) = ${below}`);
  });

  test('a training step with dropout is reproducible from its seed input and drops the expected fraction', async () => {
    const g = new Graph();
    const x = g.input('x', 'float32', [64, 64]);
    const w = g.initializer('w', { dtype: 'float32', shape: [64], data: new Float32Array(64).fill(1) });
    const d = g.op1('Dropout', [g.op1('Mul', [x, w]), g.constant(0.25, 'float32', []), g.constant(1, 'bool', [])]);
    const loss = g.op1('ReduceSum', [d], { keepdims: 0 });
    const graphs = buildTrainStep({ forward: g, loss: loss.name, trainable: ['w'] });
    assert.equal(graphs.dropoutNodes, 1);
    assert.equal(graphs.step!.nodes.filter((n) => n.op === 'Dropout').length, 0);
    const ones: Record<string, HostTensor> = {
      x: { dtype: 'float32', shape: [64, 64], data: new Float32Array(64 * 64).fill(1) },
    };
    const losses: number[] = [];
    for (const seed of [3, 3, 4]) {
      const r = await StepRunner.open(
        graphs,
        { w: { dtype: 'float32', shape: [64], data: new Float32Array(64).fill(1) } },
        { inWorker: false },
      );
      losses.push((await r.step([ones], 0.01, seed)).loss);
      await r.release();
    }
    assert.equal(losses[0], losses[1]);
    assert.notEqual(losses[0], losses[2]);
    // Sum of kept elements scaled by 1/(1−p): about 4096 on average.
    const kept = (losses[0] * 0.75) / 4096;
    assert.ok(Math.abs(kept - 0.75) < 0.03, `kept fraction ${kept}`);
  });
});

describe('evaluation graphs', () => {
  test('withoutDropout turns every Dropout into the identity', async () => {
    const { withoutDropout } = await import('../native/train/dropout.js');
    const g = new Graph();
    const x = g.input('x', 'float32', [4, 4]);
    g.output(g.op1('Dropout', [g.op1('Exp', [x]), g.constant(0.5, 'float32', []), g.constant(1, 'bool', [])]), 'y');
    const ev = withoutDropout(g);
    assert.equal(ev.nodes.filter((n) => n.op === 'Dropout').length, 0);
    assert.equal(g.nodes.filter((n) => n.op === 'Dropout').length, 1, 'the training graph is left as it was');
    const s = await openInline(ev, { device: 'cpu' });
    const out = await s.run({ x: { dtype: 'float32', shape: [4, 4], data: new Float32Array(16) } });
    assert.deepEqual(Array.from(out.y.data as Float32Array), new Array(16).fill(1));
  });
});
