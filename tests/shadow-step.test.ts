// A step taken again on a second device (gpu-check's kernel comparison): from the same state it must give the same
// step, its differences must be measured as they are, and it must not disturb the run it shadows.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { reviews } from '../native/demo/corpus.js';
import { TINY, permutationTask } from '../native/demo/tiny-lm.js';
import { Rng } from '../native/rng.js';
import { tinyLmSteps } from './support/tiny-steps.js';
import { StepRunner } from '../native/train/runner.js';
import { shadowStep, train, type ShadowStep } from '../native/train/trainer.js';

test('shadowStep: the same step elsewhere is the same; a step with another learning rate differs by exactly that', async () => {
  const { m, graphs } = tinyLmSteps();
  const runner = await StepRunner.open(graphs, m.weights, { inWorker: false });
  const shadow = await StepRunner.open(graphs, m.weights, { inWorker: false });
  const task = permutationTask(TINY, 5);
  const rng = new Rng(3);
  for (let i = 0; i < 4; i++) {
    const batch = [task(8, rng)];
    const before = { step: runner.t, params: { ...runner.params }, m: { ...runner.m }, v: { ...runner.v } };
    const taken = await runner.step(batch, 0.03, i);
    // Adam's update (weight decay included) is proportional to the learning rate: 1% more is a 1% larger update.
    const other = await shadowStep(shadow, before, runner, batch, 0.0303, i, taken);
    assert.equal(other.loss, 0);
    assert.equal(other.gradNorm, 0);
    assert.ok(Math.abs(other.update - 0.01) < 1e-4, `step ${i}: update differs by ${other.update}`);
    const same = await shadowStep(shadow, before, runner, batch, 0.03, i, taken);
    assert.deepEqual(same, { device: 'cpu', loss: 0, gradNorm: 0, update: 0 });
  }
  await runner.release();
  await shadow.release();
});

test('train with a shadow device: every step compared, and the run the same as without one', async () => {
  const backbone = fileURLToPath(new URL('../native/demo/backbone', import.meta.url));
  const lab = (xs: { text: string; label: number }[]) =>
    xs.map((x) => ({ text: x.text, label: x.label ? 'positive' : 'negative' }));
  const data = { train: lab(reviews(96, 7, 'seen')) };
  const run = async (shadowDevice?: 'cpu') => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-shadow-'));
    const steps: { loss: number; shadow?: ShadowStep }[] = [];
    await train(
      {
        model: backbone,
        task: 'classification',
        labels: ['negative', 'positive'],
        deltas: [{ method: 'lora', r: 4, alpha: 8 }],
        epochs: 1,
        batchSize: 16,
        lr: 5e-3,
        maxLength: 24,
        seed: 1,
        device: 'cpu',
        runDir: dir,
        shadowDevice,
      },
      data,
      (e) => {
        if (e.type === 'progress') steps.push({ loss: e.loss, shadow: e.shadow });
      },
    );
    rmSync(dir, { recursive: true });
    return steps;
  };
  const plain = await run();
  const shadowed = await run('cpu');
  assert.equal(shadowed.length, 6);
  assert.deepEqual(
    shadowed.map((s) => s.loss),
    plain.map((s) => s.loss),
  );
  for (const s of shadowed) assert.deepEqual(s.shadow, { device: 'cpu', loss: 0, gradNorm: 0, update: 0 });
  assert.ok(plain.every((s) => s.shadow === undefined));
});
