import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TINY, buildTinyLm, permutationTask, type TinyLmConfig } from '../native/demo/tiny-lm.js';
import { Rng } from '../native/rng.js';
import { StepRunner } from '../native/train/runner.js';
import { buildTrainStep } from '../native/train/step.js';

async function train(
  cfg: TinyLmConfig,
  steps: number,
  inWorker: boolean,
  accumulation = 1,
): Promise<{ losses: number[]; lora: Float32Array }> {
  const model = buildTinyLm(cfg);
  const graphs = buildTrainStep({
    forward: model.graph,
    loss: model.loss,
    trainable: model.trainable,
    optimizer: { maxGradNorm: 1, weightDecay: 0 },
    accumulation,
  });
  const runner = await StepRunner.open(graphs, model.weights, { inWorker, session: { device: 'cpu' } });
  const task = permutationTask(cfg, 5);
  const rng = new Rng(3);
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    const micro = Array.from({ length: accumulation }, () => task(8 / accumulation, rng));
    losses.push((await runner.step(micro, 0.03, i)).loss);
  }
  const lora = Float32Array.from(runner.params['h.0.attn.q.lora_B'].data as Float32Array);
  await runner.release();
  return { losses, lora };
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('a small transformer trains its LoRA branch end to end (graph → step graph → onnxruntime → parameters)', () => {
  test('only the low-rank branch is trainable', () => {
    const m = buildTinyLm(TINY);
    assert.deepEqual(m.trainable, [
      'h.0.attn.q.lora_A',
      'h.0.attn.q.lora_B',
      'h.0.attn.v.lora_A',
      'h.0.attn.v.lora_B',
      'h.1.attn.q.lora_A',
      'h.1.attn.q.lora_B',
      'h.1.attn.v.lora_A',
      'h.1.attn.v.lora_B',
    ]);
    const trainable = m.trainable.reduce((a, p) => a + m.weights[p].data.length, 0);
    assert.equal(trainable, 2 * 2 * (32 * 4 + 4 * 32));
  });

  test('the loss falls on the permutation task, and the run is identical when repeated with its seed', async () => {
    const a = await train(TINY, 150, true);
    const first = mean(a.losses.slice(0, 5)),
      last = mean(a.losses.slice(-10));
    assert.ok(last < 0.5 * first, `loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
    assert.ok(
      a.lora.some((v) => v !== 0),
      'lora_B moved from zero',
    );
    const b = await train(TINY, 150, true);
    assert.deepEqual(b.losses, a.losses);
    assert.deepEqual(b.lora, a.lora);
  });

  test('with dropout, repeated runs are identical too; in a worker and in this thread alike', async () => {
    const cfg = { ...TINY, dropout: 0.1 };
    const a = await train(cfg, 20, true);
    const b = await train(cfg, 20, false);
    assert.deepEqual(a.losses, b.losses);
    const noDrop = await train(TINY, 20, false);
    assert.notDeepEqual(a.losses, noDrop.losses);
  });

  test('gradient accumulation trains the same model to float32 rounding', async () => {
    const a = await train(TINY, 10, false, 1);
    const b = await train(TINY, 10, false, 2);
    for (let i = 0; i < 10; i++)
      assert.ok(Math.abs(a.losses[i] - b.losses[i]) < 1e-4, `step ${i}: ${a.losses[i]} vs ${b.losses[i]}`);
  });
});
