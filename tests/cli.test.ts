import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RULES } from '../native/autodiff/registry.js';
import '../native/autodiff/rules/index.js';

const bin = fileURLToPath(new URL('../bin/delta-studio.js', import.meta.url));
const lastJson = (out: string): Record<string, unknown> => JSON.parse(out.trim().split('\n').pop()!);
const DEMO = fileURLToPath(new URL('../native/demo/', import.meta.url));
/** A tiny run of the demo backbone on the CPU in workspace `ws` (the data flags are the caller's). */
const tinyRun = (ws: string): string[] => [
  '--model',
  join(DEMO, 'backbone'),
  '--max-steps',
  '2',
  '--max-length',
  '16',
  '--device',
  'cpu',
  '--workspace',
  ws,
];

describe('delta-studio CLI', () => {
  test('doctor --json reports the runtime and checks every rule with no failure', () => {
    const out = execFileSync(process.execPath, [bin, 'doctor', '--json'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const r = lastJson(out) as {
      ort: string;
      providers: string[];
      rules: number;
      checked: number;
      failed: string[];
      max_rel_err: number;
      cuda: { usable: boolean; reason?: string };
      device_state: { available: boolean; reason?: string; ort?: string };
      fused_attention: Record<string, { ok: boolean; max_error?: number }>;
    };
    assert.equal(r.ort, '1.29.0');
    // The resident-state addon is built (npm test builds it) and loads this onnxruntime.
    assert.deepEqual(r.device_state, { available: true, ort: '1.29.0' });
    // onnxruntime's fused attention kernels run here in float16 and agree with attention written out.
    assert.equal(r.fused_attention.cpu.ok, true);
    assert.ok(r.fused_attention.cpu.max_error! < 1e-3, `${r.fused_attention.cpu.max_error}`);
    assert.ok(r.providers.includes('cpu'));
    assert.equal(r.rules, RULES.size);
    assert.equal(r.checked, RULES.size);
    assert.deepEqual(r.failed, []);
    assert.ok(r.max_rel_err > 0 && r.max_rel_err < 1e-3, `max_rel_err ${r.max_rel_err}`);
    if (!r.cuda.usable) assert.ok(r.cuda.reason && r.cuda.reason.length > 20);
  });

  test('demo --json: LoRA on the pretrained demo backbone beats chance by far; on an untrained copy it does not', () => {
    const out = execFileSync(process.execPath, [bin, 'demo', '--device', 'cpu', '--json'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const r = lastJson(out) as {
      device: string;
      plugin: string;
      runs: { name: string; trainableParams: number; accuracy: number; macro_f1: number }[];
    };
    assert.equal(r.device, 'cpu');
    assert.equal(r.runs.length, 3);
    const [lora, untrained, full] = r.runs;
    assert.equal(
      lora.trainableParams,
      4 * (8 * 128 + 128 * 8 + 8 * 128 + 64 * 8) + 2 * 128,
      'LoRA r=8 on q and v, and the new 2-class head',
    );
    assert.ok(lora.accuracy >= 0.95, `LoRA on the pretrained backbone: ${lora.accuracy}`);
    assert.ok(untrained.accuracy < 0.7, `LoRA on the untrained backbone: ${untrained.accuracy}`);
    assert.ok(full.accuracy >= 0.9, `full fine-tuning: ${full.accuracy}`);
    assert.ok(r.plugin.endsWith('demo-reviews-lora-v1.delta'), r.plugin);
  });

  test('train --json imports the data, trains in its own process and registers the delta as a plugin; a finished run is not resumed', () => {
    const ws = mkdtempSync(join(tmpdir(), 'ds-ws-'));
    const args = [
      'train',
      '--model',
      join(DEMO, 'backbone'),
      '--data',
      join(DEMO, 'reviews-train.csv'),
      '--validation',
      join(DEMO, 'reviews-test.csv'),
      '--method',
      'lora',
      '--r',
      '4',
      '--epochs',
      '1',
      '--max-steps',
      '12',
      '--batch-size',
      '16',
      '--lr',
      '5e-3',
      '--max-length',
      '32',
      '--device',
      'cpu',
      '--workspace',
      ws,
      '--checkpoint-every',
      '4',
      '--json',
    ];
    const r = lastJson(
      execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
    ) as {
      status: string;
      steps: number;
      metrics: Record<string, number>;
      plugin: { name: string; version: number; file: string };
      runDir: string;
      device: string;
    };
    assert.equal(r.status, 'finished');
    assert.equal(r.steps, 12);
    assert.equal(r.device, 'cpu');
    assert.ok(r.metrics.accuracy > 0 && r.metrics.accuracy <= 1);
    assert.ok(existsSync(r.plugin.file));
    assert.deepEqual([r.plugin.name, r.plugin.version], ['reviews-train-lora', 1]);
    const again = spawnSync(process.execPath, [bin, 'resume', r.runDir, '--json'], { encoding: 'utf8' });
    assert.equal(again.status, 1);
    assert.match(again.stderr, /has already finished \(plugin reviews-train-lora\); start a new run/);
    const ev = lastJson(
      execFileSync(process.execPath, [bin, 'eval', r.runDir, '--json'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    ) as { rows: number; metrics: Record<string, number> };
    assert.equal(ev.rows, 600);
    assert.ok(
      Math.abs(ev.metrics.accuracy - r.metrics.accuracy) < 1e-12,
      'eval of the saved delta reproduces the final metrics',
    );
    const pr = lastJson(
      execFileSync(process.execPath, [bin, 'predict', r.runDir, '--text', 'the movie was superb', '--json'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    ) as { label: string; probabilities: Record<string, number> };
    assert.ok(['negative', 'positive'].includes(pr.label));
    assert.ok(Math.abs(pr.probabilities.negative + pr.probabilities.positive - 1) < 1e-6);
    const bad = spawnSync(
      process.execPath,
      [bin, 'train', '--model', join(DEMO, 'backbone'), '--data', join(DEMO, 'reviews-train.csv'), '--task', 'poetry'],
      { encoding: 'utf8' },
    );
    assert.equal(bad.status, 1);
    assert.match(
      bad.stderr,
      /--task must be one of classification, pair-classification, regression, causal-lm, seq2seq, chat, got "poetry"/,
    );
    rmSync(ws, { recursive: true });
  });

  test('help is complete and bad arguments are named', () => {
    const help = execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
    assert.match(help, /demo/);
    assert.match(help, /doctor/);
    assert.match(execFileSync(process.execPath, [bin, 'doctor', '--help'], { encoding: 'utf8' }), /--json/);
    const bad = spawnSync(process.execPath, [bin, 'demo', '--device', 'tpu'], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--device must be auto, cpu or cuda, got "tpu"/);
    const unknown = spawnSync(process.execPath, [bin, 'fly'], { encoding: 'utf8' });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown command "fly"/);
  });
});

describe('train validates before it records anything', () => {
  const base = (ws: string) => [
    ...tinyRun(ws),
    '--data',
    join(DEMO, 'reviews-train.csv'),
    '--validation',
    join(DEMO, 'reviews-test.csv'),
  ];
  const train = (...args: string[]) => spawnSync(process.execPath, [bin, 'train', ...args], { encoding: 'utf8' });

  test('a missing model, a missing data file or modules the delta does not find leave no workspace behind', () => {
    const root = mkdtempSync(join(tmpdir(), 'ds-pre-'));
    const ws = join(root, 'ws');
    const cases: [string[], RegExp][] = [
      [base(ws).map((a) => (a === join(DEMO, 'backbone') ? join(root, 'no-model') : a)), /no-model/],
      [
        base(ws).map((a) => (a === join(DEMO, 'reviews-train.csv') ? join(root, 'none.csv') : a)),
        /--data .*none\.csv: no such file/,
      ],
      [[...base(ws), '--delta', join(root, 'bad.json')], /target_modules|matches nothing|no module/i],
    ];
    writeFileSync(join(root, 'bad.json'), JSON.stringify({ method: 'lora', target_modules: ['no_such_proj'] }));
    for (const [args, why] of cases) {
      const r = train(...args);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, why);
      assert.equal(existsSync(ws), false, `${args.join(' ')} left a workspace`);
    }
    rmSync(root, { recursive: true });
  });

  test('--device cuda where CUDA cannot be used, and a plugin name that holds another task, record no run', () => {
    const ws = mkdtempSync(join(tmpdir(), 'ds-pre-ws-'));
    execFileSync(process.execPath, [bin, 'workspace', 'init', ws], { encoding: 'utf8' });
    const runs = () =>
      (
        lastJson(
          execFileSync(process.execPath, [bin, 'runs', 'list', '--workspace', ws, '--json'], { encoding: 'utf8' }),
        ) as {
          runs: unknown[];
        }
      ).runs.length;
    const cuda = train(...base(ws).map((a) => (a === 'cpu' ? 'cuda' : a)));
    assert.equal(cuda.status, 1);
    assert.match(cuda.stderr, /--device cuda: CUDA cannot be used here: /);
    assert.equal(runs(), 0);
    assert.equal(train(...base(ws), '--plugin', 'p').status, 0);
    assert.equal(runs(), 1);
    const lm = join(ws, 'lm.csv');
    writeFileSync(lm, 'prompt,completion\nthe film was,great\nthe plot was,dull\nwe,loved it\nnever,again\n');
    const other = train(
      ...base(ws)
        .map((a) => (a.endsWith('reviews-train.csv') ? lm : a))
        .filter((a, i, all) => a !== '--validation' && all[i - 1] !== '--validation'),
      '--task',
      'causal-lm',
      '--plugin',
      'p',
    );
    assert.equal(other.status, 1, other.stderr);
    assert.match(
      other.stderr,
      /plugin "p" cannot take this as its next version: its versions are classification plugins and this one is causal-lm/,
    );
    assert.equal(runs(), 1);
    rmSync(ws, { recursive: true });
  });
});

test('predict --plugin: a classification plugin answers even when the bare base cannot; a causal-LM plugin generates', () => {
  const ws = mkdtempSync(join(tmpdir(), 'ds-predict-'));
  const run = (...args: string[]) =>
    execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const common = tinyRun(ws);
  run('train', ...common, '--data', join(DEMO, 'reviews-train.csv'), '--plugin', 'sentiment');
  const lm = join(ws, 'lm.csv');
  writeFileSync(
    lm,
    'prompt,completion\nthe film was,great\nthe plot was,dull\nwe,loved it\nnever,again\nit was,fine\n',
  );
  run('train', ...common, '--data', lm, '--task', 'causal-lm', '--plugin', 'writer');
  const cls = lastJson(
    run('predict', '--plugin', 'sentiment', '--text', 'we loved it', '--compare-base', '--workspace', ws, '--json'),
  ) as { prediction: { label: string }; base: unknown; baseMessage: string };
  assert.ok(['negative', 'positive'].includes(cls.prediction.label));
  assert.equal(cls.base, null);
  assert.match(cls.baseMessage, /head/);
  const text = run('predict', '--plugin', 'sentiment', '--text', 'we loved it', '--compare-base', '--workspace', ws);
  assert.match(text, /^sentiment: (negative|positive) /m);
  assert.match(text, /^base: no answer — /m);
  const gen = lastJson(
    run(
      'predict',
      '--plugin',
      'writer',
      '--text',
      'the film was',
      '--max-new-tokens',
      '3',
      '--workspace',
      ws,
      '--json',
    ),
  ) as { prediction: { generated: string } };
  assert.equal(typeof gen.prediction.generated, 'string');
  const none = spawnSync(process.execPath, [bin, 'predict', '--text', 'x', '--workspace', ws], { encoding: 'utf8' });
  assert.equal(none.status, 1);
  assert.match(none.stderr, /--plugin NAME/);
  rmSync(ws, { recursive: true });
});

test('flags as people type them: a negative value, method settings with --set, and the summary says what trained for how long', () => {
  const ws = mkdtempSync(join(tmpdir(), 'ds-flags-'));
  const args = ['train', '--data', join(DEMO, 'reviews-train.csv'), ...tinyRun(ws)];
  const neg = spawnSync(process.execPath, [bin, ...args, '--lr', '-5'], { encoding: 'utf8' });
  assert.equal(neg.status, 1);
  assert.match(neg.stderr, /--lr must be greater than 0, got "-5"/);
  assert.doesNotMatch(neg.stderr, /ambiguous/);
  const badSet = spawnSync(process.execPath, [bin, ...args, '--method', 'adapter', '--set', 'bottleneck'], {
    encoding: 'utf8',
  });
  assert.match(badSet.stderr, /--set bottleneck: write key=value/);
  const text = execFileSync(process.execPath, [bin, ...args, '--method', 'adapter', '--set', 'bottleneck_dim=4'], {
    encoding: 'utf8',
  });
  assert.match(text, /run \S+ finished after 2 steps in [\d.]+ s, [\d,]+ trainable; /);
  assert.doesNotMatch(text, /CUDA/, 'no GPU here: nothing to say about CUDA');
  const r = lastJson(
    execFileSync(process.execPath, [bin, ...args, '--method', 'adapter', '--set', 'bottleneck_dim=4', '--json'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  ) as { trainableParams: number; seconds: number; plugin: { name: string } };
  assert.ok(r.trainableParams > 0 && r.seconds > 0);
  const shown = lastJson(
    execFileSync(process.execPath, [bin, 'plugins', 'show', r.plugin.name, '--workspace', ws, '--json'], {
      encoding: 'utf8',
    }),
  ) as { versions: { methods: { method: string; bottleneck_dim: number }[] }[] };
  assert.deepEqual(
    shown.versions.map((v) => v.methods[0].bottleneck_dim),
    [4, 4],
  );
  const notWs = spawnSync(process.execPath, [bin, 'workspace', 'check', DEMO], { encoding: 'utf8' });
  assert.equal(notWs.status, 1);
  assert.match(notWs.stderr, /is not a Delta Studio workspace \(it has no workspace\.db\): there is nothing to check/);
  assert.doesNotMatch(notWs.stderr, /workspace init/);
  rmSync(ws, { recursive: true });
});

test('evaluate without training (--max-steps 0), a held-out --test file, a headerless file and a time budget', () => {
  const ws = mkdtempSync(join(tmpdir(), 'ds-eval-only-'));
  const rows = readFileSync(join(DEMO, 'reviews-train.csv'), 'utf8').trim().split('\n').slice(1);
  const plain = join(ws, 'plain.csv');
  writeFileSync(plain, `${rows.join('\n')}\n`); // no header line
  const plainTest = join(ws, 'plain-test.csv'); // the columns given are every file's
  writeFileSync(plainTest, readFileSync(join(DEMO, 'reviews-test.csv'), 'utf8').split('\n').slice(1).join('\n'));
  const json = (...args: string[]) =>
    lastJson(
      execFileSync(process.execPath, [bin, 'train', ...args, '--json'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    ) as {
      runId: string;
      status: string;
      steps: number;
      plugin: unknown;
      reason: string | null;
      metrics: Record<string, number>;
    };
  const common = ['--model', join(DEMO, 'backbone'), '--max-length', '16', '--device', 'cpu', '--workspace', ws];
  const evalOnly = json(...common, '--data', plain, '--columns', 'text,label', '--test', plainTest, '--max-steps', '0');
  assert.equal(evalOnly.status, 'finished');
  assert.equal(evalOnly.steps, 0);
  assert.equal(evalOnly.plugin, null, 'an untrained delta is no plugin');
  assert.ok(evalOnly.metrics.accuracy >= 0 && evalOnly.metrics.accuracy <= 1);
  const shown = lastJson(
    execFileSync(process.execPath, [bin, 'runs', 'show', evalOnly.runId, '--workspace', ws, '--json'], {
      encoding: 'utf8',
    }),
  ) as { run: { reason: string }; series: Record<string, { step: number; value: number }[]> };
  assert.match(shown.run.reason, /evaluated only/);
  assert.equal(shown.series['test/accuracy']?.length, 1, 'the test split evaluated once');
  const timed = json(
    ...common,
    '--data',
    plain,
    '--columns',
    'text,label',
    '--epochs',
    '50',
    '--batch-size',
    '4',
    '--max-time',
    '1',
  );
  assert.equal(timed.status, 'stopped-early');
  assert.match(timed.reason ?? '', /the time budget of 1 s was reached at step \d+ of \d+/);
  assert.ok(timed.steps > 0);
  rmSync(ws, { recursive: true });
});

test('a command that would make a workspace and then fails leaves none behind', () => {
  const root = mkdtempSync(join(tmpdir(), 'ds-no-ws-'));
  const ws = join(root, 'ws');
  const r = spawnSync(
    process.execPath,
    [bin, 'import-peft', join(root, 'no-adapter'), '--model', join(DEMO, 'backbone'), '--workspace', ws],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no-adapter/);
  assert.equal(existsSync(ws), false);
  rmSync(root, { recursive: true });
});
