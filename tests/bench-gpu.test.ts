// `npm run bench:gpu`: its CPU smoke run goes end to end (model folder, Delta Studio runs, the PyTorch peer when a
// Python with torch is there) and prints the JSON document the GPU run prints; without a GPU it says so and exits 0.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const bench = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  JSON.parse(
    execFileSync(process.execPath, ['--import', 'tsx', 'bench/gpu.ts', ...args], {
      cwd: repo,
      encoding: 'utf8',
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 240_000,
    }),
  );

// Debian's python3-torch, where this machine has it (the default python3 may be another one).
const debianTorch =
  existsSync('/usr/bin/python3') && spawnSync('/usr/bin/python3', ['-c', 'import torch']).status === 0
    ? '/usr/bin/python3'
    : undefined;

interface Run {
  config: string;
  side: string;
  precision: string;
  tokens_per_sec: number;
  final_loss: number;
  device: string;
  peak_rss_mib: number;
  peak_gpu_mib: number | null;
  implementation: string;
  error?: string;
}

test('--smoke: a tiny Llama on the CPU, Delta Studio in both precisions and PyTorch beside it', async () => {
  const doc = bench(['--smoke'], debianTorch ? { DELTA_STUDIO_PYTHON: debianTorch } : { DELTA_STUDIO_PYTHON: 'none' });
  assert.equal(doc.gpu, null);
  assert.equal(doc.smoke, true);
  assert.equal(doc.device, 'cpu');
  assert.equal(doc.models.tiny.params, 139584);
  const runs = doc.runs as Run[];
  const ds = runs.filter((r) => r.side === 'delta-studio');
  assert.deepEqual(
    ds.map((r) => `${r.config} ${r.precision}`),
    ['lora-tiny fp32', 'lora-tiny fp16', 'full-tiny fp32'],
  );
  for (const r of runs) {
    assert.equal(r.error, undefined, `${r.side} ${r.config}: ${r.error}`);
    assert.ok(r.tokens_per_sec > 0, `${r.side} ${r.config} tokens/s`);
    assert.ok(Number.isFinite(r.final_loss) && r.final_loss > 0, `${r.side} ${r.config} loss`);
    assert.ok(r.peak_rss_mib > 0);
    assert.equal(r.peak_gpu_mib, null);
    assert.equal(r.device, 'cpu');
  }
  // A random 512-token vocabulary starts near ln 512 ≈ 6.2 on both sides.
  for (const r of runs) assert.ok(Math.abs(r.final_loss - Math.log(512)) < 1, `${r.side} loss ${r.final_loss}`);
  const pt = runs.filter((r) => r.side === 'pytorch-peft');
  if (!debianTorch) {
    assert.equal(pt.length, 0);
    assert.match(doc.pytorch_missing, /no torch/);
    return;
  }
  assert.deepEqual(
    pt.map((r) => `${r.config} ${r.precision}`),
    ['lora-tiny bf16-autocast', 'lora-tiny fp32', 'full-tiny fp32'],
  );
  // Without peft, the smoke run says it stood in a hand-written LoRA.
  if (!doc.versions.python.peft) for (const r of pt) assert.match(r.implementation, /hand-written .*smoke run/);
  assert.equal(doc.ratios.length, 5);
  for (const q of doc.ratios) assert.ok(q.speed > 0 && q.memory > 0, JSON.stringify(q));
});

test(
  'without an NVIDIA GPU: { gpu: null } with the reason, nothing run, exit 0',
  { skip: spawnSync('nvidia-smi', ['-L']).status === 0 ? 'this machine has an NVIDIA GPU' : false },
  () => {
    const doc = bench([]);
    assert.equal(doc.gpu, null);
    assert.match(doc.reason, /nvidia-smi/);
    assert.deepEqual(doc.runs, []);
  },
);
