import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { TINY, permutationTask } from '../native/demo/tiny-lm.js';
import { Rng } from '../native/rng.js';
import { tinyLmSteps } from './support/tiny-steps.js';
import { planEpoch } from '../native/train/batching.js';
import { loadCheckpoint, saveCheckpoint } from '../native/train/checkpoint.js';
import { accuracy, exactMatch, macroF1, mcc, pearson, perplexity, spearman } from '../native/train/metrics.js';
import { StepRunner } from '../native/train/runner.js';
import { lrAt } from '../native/train/schedule.js';

describe("learning-rate schedules (transformers' warmup schedules)", () => {
  const base = { lr: 1e-3, warmup: 10, total: 100 };
  test('warmup, then constant, linear or cosine decay', () => {
    for (const kind of ['constant', 'linear', 'cosine'] as const) {
      assert.equal(lrAt({ ...base, kind }, 1), 0);
      assert.ok(Math.abs(lrAt({ ...base, kind }, 6) - 5e-4) < 1e-15);
      assert.ok(Math.abs(lrAt({ ...base, kind }, 11) - 1e-3) < 1e-15);
    }
    assert.ok(Math.abs(lrAt({ ...base, kind: 'linear' }, 56) - 5e-4) < 1e-15);
    assert.ok(Math.abs(lrAt({ ...base, kind: 'cosine' }, 56) - 5e-4) < 1e-15);
    assert.ok(
      Math.abs(lrAt({ ...base, kind: 'cosine' }, 33) - 1e-3 * 0.5 * (1 + Math.cos((Math.PI * 22) / 90))) < 1e-15,
    );
    assert.equal(lrAt({ ...base, kind: 'linear' }, 101), 0);
    assert.equal(lrAt({ ...base, kind: 'constant' }, 101), 1e-3);
  });
});

describe('metrics', () => {
  const gold = [0, 1, 2, 0, 1, 2, 2, 1],
    pred = [0, 2, 1, 0, 0, 1, 2, 1];
  test('classification', () => {
    assert.equal(accuracy(pred, gold), 4 / 8);
    assert.ok(Math.abs(macroF1(pred, gold) - 0.5111111111111111) < 1e-12);
    assert.ok(Math.abs(mcc(pred, gold) - 0.2619047619047619) < 1e-12);
    assert.equal(mcc(gold, gold), 1);
    assert.equal(mcc([1, 1, 1], [1, 1, 1]), 0, 'undefined MCC is 0, as scikit-learn');
  });
  test('regression, language modelling, generation', () => {
    assert.ok(Math.abs(pearson([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) - 0.8320502943378437) < 1e-12);
    assert.ok(Math.abs(spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) - 0.8207826816681234) < 1e-12);
    assert.ok(Math.abs(perplexity(Math.log(7)) - 7) < 1e-12);
    assert.equal(exactMatch([' a  b', 'c'], ['a b', 'd']), 0.5);
    assert.throws(() => accuracy([1], [1, 2]), /1 predictions for 2 labels/);
  });
});

describe('length-bucketed batches', () => {
  const rng = new Rng(5);
  const lengths = Array.from({ length: 1000 }, () => (rng.next() < 0.8 ? 5 + rng.int(10) : 50 + rng.int(200)));
  test('every example once, the same plan for the same seed and epoch, another for the next epoch', () => {
    const a = planEpoch(lengths, 16, 3, 0),
      b = planEpoch(lengths, 16, 3, 0),
      c = planEpoch(lengths, 16, 3, 1);
    assert.deepEqual(a.batches, b.batches);
    assert.notDeepEqual(a.batches, c.batches);
    assert.deepEqual(
      a.batches.flat().sort((x, y) => x - y),
      lengths.map((_, i) => i),
    );
    assert.equal(a.batches.length, Math.ceil(1000 / 16));
  });
  test('bucketing cuts padding against a plain shuffle', () => {
    const bucketed = planEpoch(lengths, 16, 3, 0),
      plain = planEpoch(lengths, 16, 3, 0, 1);
    assert.equal(bucketed.realTokens, plain.realTokens);
    assert.ok(bucketed.padTokens < 0.35 * plain.padTokens, `padding ${bucketed.padTokens} vs ${plain.padTokens}`);
  });
});

describe('checkpoints and exact resume', () => {
  async function run(steps: number, from?: string, to?: string, stopAt?: number) {
    const cfg = { ...TINY, dropout: 0.1 };
    const { m, graphs } = tinyLmSteps(cfg);
    const runner = await StepRunner.open(graphs, m.weights, { inWorker: false });
    const task = permutationTask(cfg, 5);
    const rng = new Rng(3);
    let start = 0;
    if (from) {
      const s = loadCheckpoint(from)!;
      runner.restore(s);
      rng.state = s.extra.rng as number;
      start = s.step;
    }
    const losses: number[] = [];
    for (let i = start; i < steps; i++) {
      losses.push((await runner.step([task(8, rng)], 0.03, i)).loss);
      if (to && i + 1 === stopAt) {
        saveCheckpoint(to, {
          step: runner.t,
          epoch: 0,
          cursor: i + 1,
          params: runner.params,
          m: runner.m,
          v: runner.v,
          extra: { rng: rng.state },
        });
        break;
      }
    }
    const params = Object.fromEntries(
      Object.entries(runner.params).map(([k, t]) => [k, Array.from(t.data as Float32Array)]),
    );
    await runner.release();
    return { losses, params };
  }

  test('5 steps, a checkpoint, a new process state, 5 more steps: the same losses and parameters, to the last bit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-ckpt-'));
    const whole = await run(10);
    const first = await run(10, undefined, dir, 5);
    const rest = await run(10, dir);
    assert.deepEqual([...first.losses, ...rest.losses], whole.losses);
    assert.deepEqual(rest.params, whole.params);
    rmSync(dir, { recursive: true });
  });

  test('only the newest checkpoints are kept, and latest.json names the last one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-ckpt-'));
    const t = { dtype: 'float32' as const, shape: [2], data: Float32Array.of(1, 2) };
    for (const step of [1, 2, 3])
      saveCheckpoint(dir, {
        step,
        epoch: 0,
        cursor: step,
        params: { w: t },
        m: { w: t },
        v: { w: t },
        extra: { best: step },
      });
    assert.deepEqual(readdirSync(dir).sort(), [
      'latest.json',
      'step-00000002.safetensors',
      'step-00000003.safetensors',
    ]);
    const s = loadCheckpoint(dir)!;
    assert.equal(s.step, 3);
    assert.deepEqual(s.extra, { best: 3 });
    assert.deepEqual(Array.from(s.params.w.data as Float32Array), [1, 2]);
    assert.equal(loadCheckpoint(join(dir, 'none')), undefined);
    rmSync(dir, { recursive: true });
  });
});
