// One end-to-end training run as `npm run demo` makes it (LoRA r=8 on the embedded backbone, 800 reviews, 15 epochs),
// in a process of its own so its peak RSS is its own. Prints one JSON line. Run by bench/train-step.ts.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { train } from '../native/train/trainer.js';

const demo = (p: string): string => fileURLToPath(new URL(`../native/demo/${p}`, import.meta.url));
const rows = (file: string) =>
  readFileSync(demo(file), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => {
      const m = /^"(.*)",(\w+)$/.exec(l);
      if (!m) throw new Error(`${file}: unexpected row ${l}`);
      return { text: m[1], label: m[2] };
    });
const dir = mkdtempSync(join(tmpdir(), 'ds-e2e-'));
const t0 = performance.now();
let steps = 0;
const r = await train(
  {
    model: demo('backbone'),
    task: 'classification',
    labels: ['negative', 'positive'],
    deltas: [{ method: 'lora', r: 8, alpha: 16 }],
    epochs: 15,
    batchSize: 32,
    lr: 5e-3,
    warmup: 0.1,
    maxLength: 32,
    seed: 1,
    device: 'cpu',
    runDir: dir,
  },
  { train: rows('reviews-train.csv'), validation: rows('reviews-test.csv') },
  (e) => {
    if (e.type === 'progress') steps = e.step;
  },
);
rmSync(dir, { recursive: true, force: true });
process.stdout.write(
  `${JSON.stringify({ steps, seconds: (performance.now() - t0) / 1000, tokens_per_sec: r.tokensPerSec, accuracy: r.metrics.accuracy, peak_rss_bytes: process.resourceUsage().maxRSS * 1024 })}\n`,
);
