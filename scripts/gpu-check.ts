// `npm run gpu-check`: for anyone with an NVIDIA GPU. Runs doctor (CUDA status, every gradient rule on every
// usable provider), then the same short LoRA run on the demo backbone on CUDA and on the CPU, and compares their
// loss curves and speed. Prints one JSON summary as the last line.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { doctor } from '../native/cli/doctor.js';
import { reviews } from '../native/demo/corpus.js';
import { cudaStatus } from '../native/runtime/providers.js';
import { train } from '../native/train/trainer.js';

const backbone = fileURLToPath(new URL('../native/demo/backbone', import.meta.url));
const lab = (xs: { text: string; label: number }[]) =>
  xs.map((x) => ({ text: x.text, label: x.label ? 'positive' : 'negative' }));
const data = { train: lab(reviews(512, 1, 'seen')), validation: lab(reviews(256, 2, 'unseen')) };

async function run(device: 'cpu' | 'cuda') {
  const dir = mkdtempSync(join(tmpdir(), 'ds-gpu-check-'));
  const losses: number[] = [];
  const t0 = performance.now();
  const r = await train(
    {
      model: backbone,
      task: 'classification',
      labels: ['negative', 'positive'],
      deltas: [{ method: 'lora', r: 8, alpha: 16 }],
      epochs: 2,
      batchSize: 32,
      lr: 5e-3,
      warmup: 0.1,
      maxLength: 32,
      seed: 1,
      device,
      runDir: dir,
    },
    data,
    (e) => {
      if (e.type === 'progress') losses.push(e.loss);
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
  };
}

const report = await doctor((x) =>
  process.stderr.write(`${x.device} ${x.label}: ${x.error ?? `f32 ${x.err32.toExponential(1)}`}\n`),
);
const cuda = await cudaStatus();
const cpu = await run('cpu');
const gpu = cuda.usable ? await run('cuda') : null;
const summary = {
  ort: report.ort,
  providers: report.providers,
  cuda: { usable: cuda.usable, reason: cuda.reason ?? null, libraries: report.cuda.libraries.lines },
  gradient_rules: {
    rules: report.rules,
    checked: report.checked,
    failed: report.failed,
    max_rel_err: report.max_rel_err,
    float64_as_float32: report.float64_as_float32,
  },
  cpu: { ...cpu, losses: undefined, final_loss: cpu.losses[cpu.losses.length - 1] },
  cuda_run: gpu ? { ...gpu, losses: undefined, final_loss: gpu.losses[gpu.losses.length - 1] } : null,
  // Per step, to see where the curves part: at the first step (a kernel computes something else) or later (float32
  // rounding that training amplifies).
  relative_loss_difference_per_step: gpu
    ? gpu.losses.map((l, i) => Number((Math.abs(l - cpu.losses[i]) / Math.abs(cpu.losses[i])).toExponential(2)))
    : null,
  max_loss_difference: gpu ? Math.max(...gpu.losses.map((l, i) => Math.abs(l - cpu.losses[i]))) : null,
  // The issue's measure: per step, |cuda − cpu| / |cpu|.
  max_relative_loss_difference: gpu
    ? Math.max(...gpu.losses.map((l, i) => Math.abs(l - cpu.losses[i]) / Math.abs(cpu.losses[i])))
    : null,
  tf32: process.env.NVIDIA_TF32_OVERRIDE === '0' ? 'off (NVIDIA_TF32_OVERRIDE=0)' : 'as the provider sets it',
  cuda_speedup: gpu ? cpu.seconds / gpu.seconds : null,
};
process.stdout.write(`${JSON.stringify(summary)}\n`);
process.exitCode = report.failed.length ? 1 : 0;
