// `npm run gpu-check`: for anyone with an NVIDIA GPU. Runs doctor (CUDA status, every gradient rule on every
// usable provider), then the same short LoRA run on the demo backbone on CUDA and on the CPU, and compares them two
// ways: each CUDA step taken again on the CPU from the same state (the kernels: they must agree to float32
// rounding), and the whole loss curves (which training's own sensitivity spreads apart: the yardstick is a CPU run
// whose learning rate is one float32 ulp larger). Prints one JSON summary as the last line.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { doctor } from '../native/cli/doctor.js';
import { reviews } from '../native/demo/corpus.js';
import { cudaStatus } from '../native/runtime/providers.js';
import { train, type ShadowStep } from '../native/train/trainer.js';

const backbone = fileURLToPath(new URL('../native/demo/backbone', import.meta.url));
const lab = (xs: { text: string; label: number }[]) =>
  xs.map((x) => ({ text: x.text, label: x.label ? 'positive' : 'negative' }));
const data = { train: lab(reviews(512, 1, 'seen')), validation: lab(reviews(256, 2, 'unseen')) };

async function run(device: 'cpu' | 'cuda', opts: { lrUlps?: number; shadowDevice?: 'cpu' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'ds-gpu-check-'));
  const losses: number[] = [];
  const shadow: ShadowStep[] = [];
  const t0 = performance.now();
  const r = await train(
    {
      model: backbone,
      task: 'classification',
      labels: ['negative', 'positive'],
      deltas: [{ method: 'lora', r: 8, alpha: 16 }],
      epochs: 2,
      batchSize: 32,
      lr: 5e-3 * (1 + (opts.lrUlps ?? 0) * 2 ** -23),
      warmup: 0.1,
      maxLength: 32,
      seed: 1,
      device,
      runDir: dir,
      shadowDevice: opts.shadowDevice,
      // The graph CUDA trains with, on both providers: the curves compare kernels, not graph forms.
      attention,
    },
    data,
    (e) => {
      if (e.type !== 'progress') return;
      losses.push(e.loss);
      if (e.shadow) shadow.push(e.shadow);
    },
  );
  rmSync(dir, { recursive: true, force: true });
  return {
    device: r.device,
    steps: r.steps,
    seconds: (performance.now() - t0) / 1000,
    tokens_per_sec: r.tokensPerSec,
    accuracy: r.metrics.accuracy,
    losses,
    shadow,
  };
}

const relDiffs = (a: number[], b: number[]): number[] =>
  a.map((x, i) => Number((Math.abs(x - b[i]) / Math.abs(b[i])).toExponential(2)));
const worst = (xs: number[]): number => Number(Math.max(...xs).toExponential(2));

const report = await doctor((x) =>
  process.stderr.write(`${x.device} ${x.label}: ${x.error ?? `f32 ${x.err32.toExponential(1)}`}\n`),
);
const cuda = await cudaStatus();
// Fused attention where CUDA runs it (the trainer's choice there), else attention written out.
const attention = !cuda.usable || report.fused_attention.cuda?.ok ? 'fused' : 'explicit';
const cpu = await run('cpu');
const yardstick = await run('cpu', { lrUlps: 1 });
const gpu = cuda.usable ? await run('cuda') : null;
// Shadowing costs a CPU step per step: its own run, so that the one above keeps CUDA's speed (the curve is the same).
const shadowed = cuda.usable ? await run('cuda', { shadowDevice: 'cpu' }) : null;
const yardstickDiffs = relDiffs(yardstick.losses, cpu.losses);
// float32 kernels that sum in another order: the loss to ~1e-6, the update to ~1e-4 (Adam divides by √v, so an
// element with a gradient near zero moves by the sign of its rounding; L2 over all elements keeps that small).
const STEP_LIMITS = { loss: 1e-5, gradNorm: 1e-4, update: 1e-3 };
const summary = {
  ort: report.ort,
  providers: report.providers,
  cuda: { usable: cuda.usable, reason: cuda.reason ?? null, libraries: report.cuda.libraries.lines },
  // onnxruntime's fused attention kernels in float16 (the trainer's CUDA default) against attention written out, and
  // the form the runs below use.
  fused_attention: report.fused_attention,
  attention,
  gradient_rules: {
    rules: report.rules,
    checked: report.checked,
    failed: report.failed,
    max_rel_err: report.max_rel_err,
    float64_as_float32: report.float64_as_float32,
  },
  cpu: { ...cpu, losses: undefined, shadow: undefined, final_loss: cpu.losses[cpu.losses.length - 1] },
  cuda_run: gpu
    ? { ...gpu, losses: undefined, shadow: undefined, final_loss: gpu.losses[gpu.losses.length - 1] }
    : null,
  // Each CUDA step taken again on the CPU from CUDA's own state: what the kernels compute, step by step.
  step_agreement: shadowed
    ? {
        limits: STEP_LIMITS,
        max_relative_loss: worst(shadowed.shadow.map((x) => x.loss)),
        max_relative_grad_norm: worst(shadowed.shadow.map((x) => x.gradNorm)),
        max_relative_update: worst(shadowed.shadow.map((x) => x.update)),
        relative_update_per_step: shadowed.shadow.map((x) => Number(x.update.toExponential(2))),
        agree: shadowed.shadow.every(
          (x) => x.loss <= STEP_LIMITS.loss && x.gradNorm <= STEP_LIMITS.gradNorm && x.update <= STEP_LIMITS.update,
        ),
      }
    : null,
  // The CPU against itself with a learning rate one float32 ulp larger: how far rounding alone moves this curve.
  cpu_one_ulp_relative_loss_difference_per_step: yardstickDiffs,
  cpu_one_ulp_max_relative_loss_difference: worst(yardstickDiffs),
  // Per step, to see where the curves part: at the first step (a kernel computes something else) or later (float32
  // rounding that training amplifies).
  relative_loss_difference_per_step: gpu ? relDiffs(gpu.losses, cpu.losses) : null,
  max_loss_difference: gpu ? Math.max(...gpu.losses.map((l, i) => Math.abs(l - cpu.losses[i]))) : null,
  // The issue's measure: per step, |cuda − cpu| / |cpu|.
  max_relative_loss_difference: gpu
    ? Math.max(...gpu.losses.map((l, i) => Math.abs(l - cpu.losses[i]) / Math.abs(cpu.losses[i])))
    : null,
  tf32: process.env.NVIDIA_TF32_OVERRIDE === '0' ? 'off (NVIDIA_TF32_OVERRIDE=0)' : 'as the provider sets it',
  cuda_speedup: gpu ? cpu.seconds / gpu.seconds : null,
};
process.stdout.write(`${JSON.stringify(summary)}\n`);
process.exitCode = report.failed.length || summary.step_agreement?.agree === false ? 1 : 0;
