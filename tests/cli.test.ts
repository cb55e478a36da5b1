import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RULES } from '../native/autodiff/registry.js';
import '../native/autodiff/rules/index.js';

const bin = fileURLToPath(new URL('../bin/delta-studio.js', import.meta.url));
const lastJson = (out: string): Record<string, unknown> => JSON.parse(out.trim().split('\n').pop()!);

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
    };
    assert.equal(r.ort, '1.29.0');
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
    const demo = fileURLToPath(new URL('../native/demo/', import.meta.url));
    const args = [
      'train',
      '--model',
      join(demo, 'backbone'),
      '--data',
      join(demo, 'reviews-train.csv'),
      '--validation',
      join(demo, 'reviews-test.csv'),
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
      [bin, 'train', '--model', join(demo, 'backbone'), '--data', join(demo, 'reviews-train.csv'), '--task', 'poetry'],
      { encoding: 'utf8' },
    );
    assert.equal(bad.status, 1);
    assert.match(
      bad.stderr,
      /--task must be one of classification, pair-classification, regression, causal-lm, seq2seq, got "poetry"/,
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
