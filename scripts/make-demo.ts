// Makes the embedded default: a small Llama-style backbone pretrained by Delta Studio's own engine (full training,
// causal-LM objective) on the project's corpus (native/demo/corpus.ts), and the labelled review dataset the demo
// tunes it on. Reproducible: the same seed gives the same files. Run: npx tsx scripts/make-demo.ts
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomWeights, V, writeFolder } from '../native/demo/backbone.js';
import { corpus, reviews } from '../native/demo/corpus.js';
import { train } from '../native/train/trainer.js';

const OUT = fileURLToPath(new URL('../native/demo/backbone/', import.meta.url));
const DATA = (name: string): string => fileURLToPath(new URL(`../native/demo/${name}`, import.meta.url));
const SEED = 2024;
const steps = Number(process.argv[2] ?? 1200);

const work = mkdtempSync(join(tmpdir(), 'ds-demo-'));
const init = join(work, 'init');
writeFolder(init);
randomWeights(init, SEED);
const t0 = performance.now();
const text = corpus(40000, SEED).map((s) => ({ text: s }));
const r = await train(
  {
    model: init,
    task: 'causal-lm',
    deltas: [{ method: 'full' }],
    epochs: 100,
    maxSteps: steps,
    batchSize: 32,
    lr: 3e-3,
    schedule: 'cosine',
    warmup: 0.05,
    weightDecay: 0.01,
    maxLength: 48,
    seed: SEED,
    device: 'cpu',
    runDir: join(work, 'run'),
  },
  { train: text.slice(0, 38000), validation: text.slice(38000, 38512) },
  (e) => {
    if (e.type === 'progress' && e.step % 100 === 0)
      process.stderr.write(`step ${e.step} loss ${e.loss.toFixed(3)} (${e.tokensPerSec.toFixed(0)} tokens/s)\n`);
  },
);
process.stderr.write(
  `pretrained ${r.steps} steps in ${((performance.now() - t0) / 1000).toFixed(0)} s; held-out loss ${r.metrics.loss.toFixed(3)}, perplexity ${r.metrics.perplexity.toFixed(2)}\n`,
);
rmSync(OUT, { recursive: true, force: true });
writeFolder(OUT);
copyFileSync(r.deltaFile, join(OUT, 'model.safetensors'));
// The labelled dataset: reviews with their sentiment. Training reviews use half of the adjectives; test reviews
// only the other half, so a good test score needs what pretraining taught about words no label ever showed.
const csv = (rows: { text: string; label: number }[]): string =>
  `text,label\n${rows.map((x) => `"${x.text}",${x.label ? 'positive' : 'negative'}`).join('\n')}\n`;
writeFileSync(DATA('reviews-train.csv'), csv(reviews(800, SEED + 1, 'seen')));
writeFileSync(DATA('reviews-test.csv'), csv(reviews(600, SEED + 2, 'unseen')));
rmSync(work, { recursive: true, force: true });
process.stdout.write(
  `${JSON.stringify({ steps: r.steps, loss: r.metrics.loss, perplexity: r.metrics.perplexity, vocab: V })}\n`,
);
