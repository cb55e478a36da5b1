import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RULES } from '../native/autodiff/registry.js';
import '../native/autodiff/rules/index.js';

const bin = fileURLToPath(new URL('../bin/delta-studio.js', import.meta.url));
const lastJson = (out: string): Record<string, unknown> => JSON.parse(out.trim().split('\n').pop()!);

describe('delta-studio CLI', () => {
  test('doctor --json reports the runtime and checks every rule with no failure', () => {
    const out = execFileSync(process.execPath, [bin, 'doctor', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const r = lastJson(out) as { ort: string; providers: string[]; rules: number; checked: number; failed: string[]; max_rel_err: number; cuda: { usable: boolean; reason?: string } };
    assert.equal(r.ort, '1.29.0');
    assert.ok(r.providers.includes('cpu'));
    assert.equal(r.rules, RULES.size);
    assert.equal(r.checked, RULES.size);
    assert.deepEqual(r.failed, []);
    assert.ok(r.max_rel_err > 0 && r.max_rel_err < 1e-3, `max_rel_err ${r.max_rel_err}`);
    if (!r.cuda.usable) assert.ok(r.cuda.reason && r.cuda.reason.length > 20);
  });

  test('demo --json trains and the loss halves', () => {
    const out = execFileSync(process.execPath, [bin, 'demo', '--steps', '150', '--device', 'cpu', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const r = lastJson(out) as { device: string; first_loss: number; final_loss: number; trainable_params: number; tokens_per_sec: number };
    assert.equal(r.device, 'cpu');
    assert.equal(r.trainable_params, 1024);
    assert.ok(r.final_loss < 0.5 * r.first_loss, `${r.first_loss} → ${r.final_loss}`);
    assert.ok(r.tokens_per_sec > 0);
  });

  test('help is complete and bad arguments are named', () => {
    const help = execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
    assert.match(help, /demo/);
    assert.match(help, /doctor/);
    assert.match(execFileSync(process.execPath, [bin, 'doctor', '--help'], { encoding: 'utf8' }), /--json/);
    const bad = spawnSync(process.execPath, [bin, 'demo', '--steps', 'ten'], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--steps must be a positive integer, got "ten"/);
    const unknown = spawnSync(process.execPath, [bin, 'fly'], { encoding: 'utf8' });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown command "fly"/);
  });
});
