import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Rng } from '../native/rng.js';
import type { Example } from '../native/train/collate.js';
import { startTrainer } from '../native/train/process.js';
import { train, type TrainConfig, type TrainEvent } from '../native/train/trainer.js';

const BERT = fileURLToPath(new URL('./fixtures/models/bert', import.meta.url));

/** Sentences of the bert fixture's vocabulary; the label says whether a positive word is in them. */
function sentiment(n: number, seed: number): Example[] {
  const rng = new Rng(seed);
  const filler = ['the', 'movie', 'was', 'it', 'is', 'this', 'a', 'hello', 'world'];
  return Array.from({ length: n }, () => {
    const pos = rng.next() < 0.5;
    const words = Array.from({ length: 3 + rng.int(4) }, () => filler[rng.int(filler.length)]);
    words.splice(rng.int(words.length + 1), 0, pos ? (rng.next() < 0.5 ? 'great' : 'good') : 'bad');
    return { text: words.join(' '), label: pos ? 'pos' : 'neg' };
  });
}

const data = { train: sentiment(128, 1), validation: sentiment(64, 2) };
const config = (runDir: string, over: Partial<TrainConfig> = {}): TrainConfig => ({
  model: BERT,
  task: 'classification',
  labels: ['neg', 'pos'],
  deltas: [{ method: 'lora', r: 4, alpha: 8 }],
  epochs: 3,
  batchSize: 16,
  lr: 1e-2,
  warmup: 0.1,
  maxLength: 16,
  seed: 1,
  device: 'cpu',
  evalEvery: 8,
  checkpointEvery: 4,
  runDir,
  ...over,
});

describe('the trainer', () => {
  test('LoRA on the bert fixture learns the toy sentiment task; the best and final deltas are saved', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-run-'));
    const events: TrainEvent[] = [];
    const r = await train(config(dir, { epochs: 8 }), data, (e) => events.push(e));
    assert.equal(r.status, 'finished');
    assert.equal(r.steps, 64);
    assert.ok(r.metrics.accuracy >= 0.95, `held-out accuracy ${r.metrics.accuracy}`);
    assert.equal(events.filter((e) => e.type === 'progress').length, 64);
    assert.equal(events.filter((e) => e.type === 'eval').length, 9); // every 8 steps and the final evaluation
    const start = events[0] as Extract<TrainEvent, { type: 'start' }>;
    assert.equal(
      start.trainable,
      2 * 2 * (4 * 32 + 32 * 4) + 2 * 32 + 2,
      'LoRA on query/value plus the new 2-class head',
    );
    assert.ok(existsSync(r.deltaFile) && existsSync(join(dir, 'best.safetensors')));
    rmSync(dir, { recursive: true });
  });

  test('a run whose loss turns to NaN stops as diverged, saying at which step', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-run-'));
    const r = await train(config(dir, { lr: 1e9, maxGradNorm: 0, epochs: 1 }), data);
    assert.equal(r.status, 'diverged');
    assert.match(r.reason!, /^step \d+: loss (NaN|-?Infinity|[\d.e+-]+), gradient norm/);
    rmSync(dir, { recursive: true });
  });
});

describe('language-model tasks', () => {
  test('causal LM with prompt/completion: loss on the completion only, greedy generation scored by exact match', async () => {
    const { reviews } = await import('../native/demo/corpus.js');
    const backbone = fileURLToPath(new URL('../native/demo/backbone', import.meta.url));
    const lm = (xs: { text: string; label: number }[]) =>
      xs.map((x) => ({ prompt: x.text, completion: x.label ? 'we loved it' : 'we hated it' }));
    const dir = mkdtempSync(join(tmpdir(), 'ds-run-'));
    const r = await train(
      {
        model: backbone,
        task: 'causal-lm',
        deltas: [{ method: 'lora', r: 8, alpha: 16 }],
        epochs: 12,
        batchSize: 32,
        lr: 5e-3,
        warmup: 0.1,
        maxLength: 40,
        seed: 1,
        device: 'cpu',
        runDir: dir,
      },
      { train: lm(reviews(800, 21, 'seen')), validation: lm(reviews(64, 22, 'unseen')) },
    );
    assert.equal(r.status, 'finished');
    assert.ok(r.metrics.perplexity > 1 && r.metrics.perplexity < 2, `completion perplexity ${r.metrics.perplexity}`);
    assert.ok(r.metrics.exact_match >= 0.85, `exact match on reviews with unseen adjectives: ${r.metrics.exact_match}`);
    rmSync(dir, { recursive: true });
  });
});

describe('greedy generation', () => {
  test('seq2seq (T5) and causal (GPT-2) fixtures generate deterministically and stop at the length budget or EOS', async () => {
    const { Generator } = await import('../native/train/generate.js');
    const { loadModel } = await import('../native/models/index.js');
    const { TextTokenizer } = await import('../native/models/tokenizer.js');
    for (const name of ['t5', 'gpt2']) {
      const dir = fileURLToPath(new URL(`./fixtures/models/${name}`, import.meta.url));
      const m = loadModel(dir);
      const tok = TextTokenizer.fromFolder(dir);
      const gen = await Generator.open(m, tok, []);
      const a = await gen.generate('the cat sat', {}, 5),
        b = await gen.generate('the cat sat', {}, 5);
      assert.equal(a, b);
      assert.ok(tok.encode(a, undefined, { addSpecialTokens: false }).ids.length <= 5, `${name}: ${JSON.stringify(a)}`);
      await gen.release();
    }
  });
});

describe('the trainer process', () => {
  test('killed with SIGKILL mid-run and resumed, it ends with the metrics and delta of an uninterrupted run', async () => {
    const a = mkdtempSync(join(tmpdir(), 'ds-run-')),
      b = mkdtempSync(join(tmpdir(), 'ds-run-'));
    const whole = await startTrainer(config(a), data).result;
    let job = startTrainer(config(b), data, (e) => {
      if (e.type === 'checkpoint' && e.step >= 12) job.kill();
    });
    await assert.rejects(job.result, /ended without a result \(signal SIGKILL\); resume the run/);
    let resumedFrom: number | undefined;
    job = startTrainer(config(b), data, (e) => {
      if (e.type === 'start') resumedFrom = e.resumedFrom;
    });
    const resumed = await job.result;
    assert.ok(resumedFrom !== undefined && resumedFrom >= 12, `resumed from step ${resumedFrom}`);
    assert.equal(resumed.status, 'finished');
    assert.deepEqual(resumed.metrics, whole.metrics);
    assert.deepEqual(readFileSync(resumed.deltaFile), readFileSync(whole.deltaFile));
    rmSync(a, { recursive: true });
    rmSync(b, { recursive: true });
  });

  test('pause holds the run between steps, resume lets it finish as if never paused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-run-')),
      ref = mkdtempSync(join(tmpdir(), 'ds-run-'));
    const whole = await train(config(ref, { epochs: 4 }), data);
    const steps: number[] = [];
    let pausedAt = 0,
      stepsWhilePaused = -1;
    const job = startTrainer(config(dir, { epochs: 4 }), data, (e) => {
      if (e.type === 'progress') {
        steps.push(e.step);
        if (e.step === 2) job.pause();
      }
      if (e.type === 'paused') {
        pausedAt = steps.length;
        setTimeout(() => {
          stepsWhilePaused = steps.length - pausedAt;
          job.resume();
        }, 400);
      }
    });
    const r = await job.result;
    assert.ok(pausedAt >= 2 && pausedAt < 32, `paused after ${pausedAt} steps`);
    assert.equal(stepsWhilePaused, 0, 'no step while paused');
    assert.equal(r.status, 'finished');
    assert.deepEqual(r.metrics, whole.metrics);
    rmSync(dir, { recursive: true });
    rmSync(ref, { recursive: true });
  });

  test('cancel stops after the current step and saves the delta so far', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-run-'));
    const job = startTrainer(config(dir, { epochs: 2 }), data, (e) => {
      if (e.type === 'progress' && e.step === 3) job.cancel();
    });
    const r = await job.result;
    assert.equal(r.status, 'cancelled');
    assert.ok(r.steps >= 3 && r.steps < 16, `stopped at ${r.steps}`);
    assert.ok(existsSync(r.deltaFile));
    // Resumed, the cancelled run finishes as an uninterrupted one.
    const ref = mkdtempSync(join(tmpdir(), 'ds-run-'));
    const whole = await train(config(ref, { epochs: 2 }), data);
    const rest = await train(config(dir, { epochs: 2 }), data);
    assert.equal(rest.steps, whole.steps);
    assert.deepEqual(rest.metrics, whole.metrics);
    rmSync(dir, { recursive: true });
    rmSync(ref, { recursive: true });
  });
});

describe('the trainer process without its parent', () => {
  /** Starts a trainer from a parent process, SIGKILLs the parent after `step`, and returns what the trainer printed. */
  const orphan = async (step: number): Promise<string> => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-orphan-'));
    const job = join(dir, 'job.json');
    writeFileSync(job, JSON.stringify({ config: config(join(dir, 'run'), { epochs: 20 }), data }));
    // The parent's stderr is a file the trainer inherits: what the trainer prints once its parent is gone is kept.
    const stderr = join(dir, 'stderr.txt');
    const fd = openSync(stderr, 'w');
    const parent = spawn(
      process.execPath,
      [
        '--import',
        import.meta.resolve('tsx'),
        '--input-type=module',
        '-e',
        `import { readFileSync } from 'node:fs';
         import { startTrainer } from ${JSON.stringify(new URL('../native/train/process.ts', import.meta.url).href)};
         const { config, data } = JSON.parse(readFileSync(process.env.DS_JOB, 'utf8'));
         const job = startTrainer(config, data, (e) => e.type === 'progress' && e.step === ${step} && console.log(job.pid));`,
      ],
      { stdio: ['ignore', 'pipe', fd], env: { ...process.env, DS_JOB: job } },
    );
    closeSync(fd);
    const pid = await new Promise<number>((resolve, reject) => {
      let out = '';
      parent.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) resolve(Number(out.trim()));
      });
      parent.on('exit', (code) =>
        reject(new Error(`the parent ended first (exit code ${code}): ${readFileSync(stderr, 'utf8')}`)),
      );
    });
    parent.kill('SIGKILL');
    // The orphan is no child of ours: watch its pid.
    const gone = (): boolean => {
      try {
        process.kill(pid, 0);
        // A zombie nobody reaps (a container's PID 1 may not) has exited too.
        return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].startsWith('Z');
      } catch {
        return true;
      }
    };
    const t0 = Date.now();
    while (!gone()) {
      assert.ok(Date.now() - t0 < 30_000, 'the trainer is still running 30 s after its parent was killed');
      await new Promise((r) => setTimeout(r, 50));
    }
    const printed = readFileSync(stderr, 'utf8');
    rmSync(dir, { recursive: true });
    return printed;
  };

  test('a parent killed with SIGKILL mid-run leaves the trainer to exit quietly: no EPIPE, no stack trace', async () => {
    // Whether the trainer first reads the closed channel or first writes to it is a race: try it at a few steps.
    for (const step of [2, 5, 9]) {
      const printed = await orphan(step);
      assert.doesNotMatch(printed, /EPIPE|ERR_IPC_CHANNEL_CLOSED|\n\s+at /, `killed after step ${step}:\n${printed}`);
    }
  });
});
