// One measurement of Delta Studio's engine on the benchmark model, in a process of its own (so its peak RSS is
// its own). Prints one JSON line. Run by bench/train-step.ts.
import { BENCH, buildTinyLm, permutationTask } from '../native/demo/tiny-lm.js';
import { Graph } from '../native/onnx/graph.js';
import { openInline } from '../native/runtime/host.js';
import { Rng } from '../native/rng.js';
import { StepRunner } from '../native/train/runner.js';
import { buildTrainStep } from '../native/train/step.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const batch = arg('batch', 16),
  threads = arg('threads', 2),
  warmup = arg('warmup', 3),
  iters = arg('iters', 10);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function time(fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const ts: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

const model = buildTinyLm(BENCH);
const data = permutationTask(BENCH, 5)(batch, new Rng(1));

if (process.argv.includes('--gemm')) {
  // A large square product: the practical float32 ceiling of onnxruntime's GEMM on this machine.
  const n = 2048;
  const gg = new Graph();
  const a = gg.input('a', 'float32', [n, n]);
  gg.output(gg.op1('MatMul', [a, a]), 'c');
  const gemm = await openInline(gg, { device: 'cpu', threads });
  const ga = {
    a: {
      dtype: 'float32' as const,
      shape: [n, n],
      data: Float32Array.from({ length: n * n }, (_, i) => ((i % 97) - 48) / 97),
    },
  };
  const gemmMs = await time(() => gemm.run(ga));
  await gemm.release();
  process.stdout.write(`${JSON.stringify({ gemm_gflops: (2 * n ** 3) / (gemmMs * 1e6) })}\n`);
  process.exit(0);
}

// Forward: the loss of the frozen model plus its LoRA branch, no gradients.
const fwdGraph = model.graph.clone();
fwdGraph.outputs.length = 0;
fwdGraph.output(model.loss);
fwdGraph.prune();
const fwd = await openInline(fwdGraph, { device: 'cpu', threads });
const forwardMs = await time(() => fwd.run(data));
await fwd.release();

const graphs = buildTrainStep({
  forward: model.graph,
  loss: model.loss,
  trainable: model.trainable,
  optimizer: { maxGradNorm: 1, weightDecay: 0.01 },
});
const runner = await StepRunner.open(graphs, model.weights, { inWorker: false, session: { device: 'cpu', threads } });
let step = 0;
const trainMs = await time(() => runner.step([data], 1e-3, step++));
await runner.release();

process.stdout.write(
  `${JSON.stringify({
    forward_ms: forwardMs,
    train_step_ms: trainMs,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    nodes: { forward: fwdGraph.nodes.length, train_step: graphs.step!.nodes.length },
  })}\n`,
);
