// `delta-studio demo`: the whole engine path on a built-in model — graph → training-step graph → onnxruntime →
// updated LoRA parameters — with the loss printed as it falls.
import { TINY, buildTinyLm, permutationTask } from '../demo/tiny-lm.js';
import { Rng } from '../rng.js';
import { StepRunner } from '../train/runner.js';
import { buildTrainStep } from '../train/step.js';
import type { Device } from '../runtime/session.js';

function positiveNumber(v: unknown, name: string, integer: boolean): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new Error(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got "${v}"`);
  return n;
}

export async function demo(v: Record<string, string | boolean | undefined>): Promise<number> {
  const steps = positiveNumber(v.steps, 'steps', true);
  const lr = positiveNumber(v.lr, 'lr', false);
  const seed = positiveNumber(v.seed, 'seed', true);
  const device = String(v.device) as Device;
  if (!['auto', 'cpu', 'cuda'].includes(device)) throw new Error(`--device must be auto, cpu or cuda, got "${device}"`);
  const json = v.json === true;
  const log = (s: string): void => { (json ? process.stderr : process.stdout).write(`${s}\n`); };

  const model = buildTinyLm(TINY);
  const graphs = buildTrainStep({ forward: model.graph, loss: model.loss, trainable: model.trainable, optimizer: { maxGradNorm: 1, weightDecay: 0 } });
  const trainableParams = model.trainable.reduce((a, p) => a + model.weights[p].data.length, 0);
  const totalParams = Object.values(model.weights).reduce((a, t) => a + t.data.length, 0);
  const runner = await StepRunner.open(graphs, model.weights, { session: { device } });
  log(`model: ${TINY.layers} layers, d=${TINY.d}, vocab ${TINY.vocab}; LoRA r=${TINY.rank} on ${TINY.targets.join(', ')}: ${trainableParams} trainable of ${totalParams} parameters (${((100 * trainableParams) / totalParams).toFixed(2)}%)`);
  log(`device: ${runner.device}${runner.fallbackReason ? ` (CUDA not used: ${runner.fallbackReason})` : ''}`);
  const task = permutationTask(TINY, 5);
  const rng = new Rng(seed);
  const losses: number[] = [];
  const t0 = performance.now();
  try {
    for (let i = 0; i < steps; i++) {
      const r = await runner.step([task(8, rng)], lr, i);
      losses.push(r.loss);
      if (!Number.isFinite(r.loss)) throw new Error(`the loss diverged at step ${i + 1} (${r.loss})`);
      if (i % Math.max(1, Math.floor(steps / 10)) === 0 || i === steps - 1) {
        log(`step ${String(i + 1).padStart(5)}  loss ${r.loss.toFixed(4)}  grad norm ${r.gradNorm.toFixed(4)}`);
      }
    }
  } finally {
    await runner.release();
  }
  const secs = (performance.now() - t0) / 1000;
  const tokensPerSec = (steps * 8 * TINY.seq) / secs;
  log(`${steps} steps in ${secs.toFixed(2)} s (${Math.round(tokensPerSec)} tokens/s); loss ${losses[0].toFixed(4)} → ${losses[losses.length - 1].toFixed(4)}`);
  if (json) {
    process.stdout.write(`${JSON.stringify({ device: runner.device, fallback_reason: runner.fallbackReason ?? null, steps, first_loss: losses[0], final_loss: losses[losses.length - 1], tokens_per_sec: tokensPerSec, trainable_params: trainableParams, total_params: totalParams })}\n`);
  }
  return 0;
}
