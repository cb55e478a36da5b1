// The workspace from the command line, end to end on the demo backbone: runs recorded and compared, plugin versions
// with aliases and tags, every export format recorded in the lineage, import of the PEFT export, `workspace check`,
// and a CLI killed mid-run whose run is found interrupted and resumed to a plugin.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/delta-studio.js', import.meta.url));
const demo = fileURLToPath(new URL('../native/demo/', import.meta.url));
const lastJson = (s: string): unknown => JSON.parse(s.trim().split('\n').pop()!);
const cli = (...args: string[]): unknown =>
  lastJson(
    execFileSync(process.execPath, [bin, ...args, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
  );
const fails = (...args: string[]): string => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  assert.notEqual(r.status, 0, `expected ${args.join(' ')} to fail`);
  return r.stderr;
};

describe('workspace, runs, plugins and export commands', () => {
  let ws: string;
  const train = (...extra: string[]) =>
    cli(
      'train',
      '--model',
      join(demo, 'backbone'),
      '--data',
      join(demo, 'reviews-train.csv'),
      '--validation',
      join(demo, 'reviews-test.csv'),
      '--max-length',
      '32',
      '--batch-size',
      '16',
      '--epochs',
      '1',
      '--max-steps',
      '10',
      '--device',
      'cpu',
      '--workspace',
      ws,
      '--plugin',
      'reviews',
      ...extra,
    ) as {
      runId: string;
      status: string;
      metrics: Record<string, number>;
      plugin: { name: string; version: number; file: string };
    };
  let runs: ReturnType<typeof train>[] = [];
  before(() => {
    ws = mkdtempSync(join(tmpdir(), 'ds-wscli-'));
    runs = [
      train('--lr', '5e-3', '--method', 'lora', '--copy-model'),
      train('--lr', '1e-2', '--method', 'lora', '--r', '4'),
    ];
  });
  after(() => rmSync(ws, { recursive: true, force: true }));

  test('two runs become versions 1 and 2 of one plugin; runs list, show and compare report them', () => {
    assert.deepEqual(
      runs.map((r) => [r.status, r.plugin.version]),
      [
        ['finished', 1],
        ['finished', 2],
      ],
    );
    const list = cli('runs', 'list', '--workspace', ws) as {
      runs: { id: string; status: string; method: string; steps: number; metrics: Record<string, number> }[];
    };
    assert.deepEqual(
      list.runs.map((r) => [r.id, r.status, r.steps]),
      runs.map((r) => [r.runId, 'finished', 10]),
    );
    assert.equal(list.runs[0].metrics['eval/accuracy'], runs[0].metrics.accuracy);
    const show = cli('runs', 'show', runs[1].runId, '--workspace', ws) as {
      config: { lr: number; deltas: { r: number }[] };
      series: Record<string, { step: number }[]>;
    };
    assert.equal(show.config.lr, 1e-2);
    assert.equal(show.config.deltas[0].r, 4);
    assert.deepEqual(
      show.series['train/loss'].map((p) => p.step),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    );
    const cmp = cli('runs', 'compare', runs[0].runId, runs[1].runId, '--workspace', ws) as {
      runs: { trainableParams: number; trainablePercent: number; metrics: Record<string, number> }[];
    };
    assert.ok(cmp.runs[0].trainableParams > cmp.runs[1].trainableParams, 'r=8 trains more than r=4');
    assert.ok(cmp.runs[1].trainablePercent > 0 && cmp.runs[1].trainablePercent < 5);
    assert.equal(cmp.runs[1].metrics.accuracy, runs[1].metrics.accuracy);
  });

  test('aliases, tags and notes; latest and best follow the versions', () => {
    const best = runs[0].metrics.accuracy >= runs[1].metrics.accuracy ? 1 : 2;
    let p = cli('plugins', 'show', 'reviews', '--workspace', ws) as {
      aliases: Record<string, number>;
      versions: { version: number; runId: string; tags: string[] }[];
    };
    assert.deepEqual(p.aliases, { best, latest: 2 });
    assert.deepEqual(
      p.versions.map((v) => v.runId),
      runs.map((r) => r.runId),
    );
    cli('plugins', 'alias', 'reviews@1', 'production', '--workspace', ws);
    cli('plugins', 'tag', 'reviews@2', 'sentiment', 'try-2', '--workspace', ws);
    cli('plugins', 'notes', 'reviews@2', 'rank 4, higher lr', '--workspace', ws);
    p = cli('plugins', 'show', 'reviews', '--workspace', ws) as typeof p;
    assert.equal(p.aliases.production, 1);
    assert.deepEqual(p.versions[1].tags, ['sentiment', 'try-2']);
    cli('plugins', 'alias', 'reviews', 'production', '--delete', '--workspace', ws);
    assert.equal((cli('plugins', 'show', 'reviews', '--workspace', ws) as typeof p).aliases.production, undefined);
    assert.match(fails('plugins', 'show', 'nothing', '--workspace', ws), /no plugin "nothing" .*\(plugins: reviews\)/);
  });

  test('every export format is written, recorded in the lineage, and the PEFT export imports back as a plugin', () => {
    const out = mkdtempSync(join(tmpdir(), 'ds-exports-'));
    const peft = cli('export', 'reviews@1', '--format', 'peft', '--out', out, '--workspace', ws) as {
      path: string;
      files: string[];
    };
    assert.ok(
      existsSync(join(peft.path, 'adapter_config.json')) && existsSync(join(peft.path, 'adapter_model.safetensors')),
    );
    assert.equal(JSON.parse(readFileSync(join(peft.path, 'adapter_config.json'), 'utf8')).peft_type, 'LORA');
    const merged = cli(
      'export',
      'reviews@1',
      '--format',
      'merged',
      '--dtype',
      'float32',
      '--out',
      out,
      '--workspace',
      ws,
    ) as { path: string };
    assert.ok(existsSync(join(merged.path, 'config.json')) && existsSync(join(merged.path, 'model.safetensors')));
    const onnx = cli('export', 'reviews@1', '--format', 'onnx', '--out', out, '--workspace', ws) as { path: string };
    assert.ok(readFileSync(onnx.path).length > 1000);
    const bundle = cli('export', 'reviews@1', '--format', 'bundle', '--workspace', ws) as { path: string };
    assert.ok(bundle.path.startsWith(join(ws, 'exports')), "the default folder is the workspace's exports/");
    const show = cli('plugins', 'show', 'reviews', '--workspace', ws) as {
      versions: { exports: { format: string; path: string }[] }[];
      lineage: unknown;
    };
    assert.deepEqual(
      show.versions[0].exports.map((e) => e.format),
      ['peft', 'merged', 'onnx', 'bundle'],
    );
    assert.match(
      fails('export', 'reviews@1', '--format', 'peft', '--out', out, '--workspace', ws),
      /exists|not empty/i,
    );
    assert.match(
      fails('export', 'reviews@1', '--format', 'peft', '--out', out, '--name', '../escaped', '--workspace', ws),
      /export name "..\/escaped" escapes/,
    );
    assert.ok(!existsSync(join(out, '..', 'escaped')));
    assert.match(
      fails('export', 'reviews@1', '--format', 'pickle', '--workspace', ws),
      /--format must be one of peft, merged, onnx, bundle, got "pickle"/,
    );
    const imported = cli(
      'import-peft',
      peft.path,
      '--model',
      join(demo, 'backbone'),
      '--name',
      'reviews-from-peft',
      '--workspace',
      ws,
    ) as { plugin: string; version: number; method: string; trainableParams: number };
    assert.deepEqual([imported.plugin, imported.version, imported.method], ['reviews-from-peft', 1, 'lora']);
    rmSync(out, { recursive: true, force: true });
  });

  test('workspace check finds the workspace consistent, then a damaged plugin file', () => {
    const ok = cli('workspace', 'check', ws) as { ok: boolean; checked: { plugins: number; models: number } };
    assert.equal(ok.ok, true);
    assert.equal(ok.checked.plugins, 3);
    assert.equal(ok.checked.models, 1, 'the model copied in with --copy-model is checked');
    const file = runs[0].plugin.file;
    const bytes = readFileSync(file);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(file, bytes);
    const r = spawnSync(process.execPath, [bin, 'workspace', 'check', ws], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(
      r.stdout,
      /ERROR\s+plugins\/reviews\/reviews-v1\.delta: plugin reviews v1: sha256 [0-9a-f]{16}…, [0-9a-f]{16}… recorded/,
    );
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(file, bytes);
  });
});

test('a CLI killed mid-run leaves the run interrupted; resume finishes it and registers the plugin', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'ds-wskill-'));
  const args = [
    'train',
    '--model',
    join(demo, 'backbone'),
    '--data',
    join(demo, 'reviews-train.csv'),
    '--validation',
    join(demo, 'reviews-test.csv'),
    '--max-length',
    '32',
    '--batch-size',
    '8',
    '--epochs',
    '2',
    '--max-steps',
    '150',
    '--checkpoint-every',
    '5',
    '--device',
    'cpu',
    '--workspace',
    ws,
    '--plugin',
    'killed',
    '--json',
  ];
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  // Kill the CLI (not the trainer) once a checkpoint past step 10 exists: its trainer process must stop too.
  let exited = false;
  child.on('close', () => {
    exited = true;
  });
  await new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      const runs = existsSync(join(ws, 'runs')) ? readdirSync(join(ws, 'runs')) : [];
      const ckpts = runs.flatMap((r) =>
        existsSync(join(ws, 'runs', r, 'checkpoints')) ? readdirSync(join(ws, 'runs', r, 'checkpoints')) : [],
      );
      if (ckpts.some((f) => /^step-0*(1[0-9]|[2-9][0-9])\.safetensors$/.test(f))) {
        clearInterval(t);
        child.kill('SIGKILL');
        resolve();
      }
      if (exited) {
        clearInterval(t);
        reject(new Error(`the run ended before it could be killed: ${err}`));
      }
    }, 10);
  });
  await new Promise((r) => (exited ? r(null) : child.on('close', r)));
  await new Promise((r) => setTimeout(r, 300));
  const list = cli('runs', 'list', '--workspace', ws) as {
    runs: { id: string; status: string; reason: string; steps: number }[];
  };
  assert.equal(list.runs.length, 1);
  assert.equal(list.runs[0].status, 'interrupted');
  assert.match(list.runs[0].reason, /resume it/);
  assert.ok(
    list.runs[0].steps >= 5 && list.runs[0].steps < 150,
    `steps recorded before the kill: ${list.runs[0].steps}`,
  );
  const resumed = cli('resume', list.runs[0].id, '--workspace', ws) as {
    status: string;
    steps: number;
    plugin: { name: string; version: number };
  };
  assert.equal(resumed.status, 'finished');
  assert.equal(resumed.steps, 150);
  assert.deepEqual([resumed.plugin.name, resumed.plugin.version], ['killed', 1]);
  assert.equal(
    (cli('runs', 'show', list.runs[0].id, '--workspace', ws) as { run: { status: string } }).run.status,
    'finished',
  );
  assert.equal((cli('workspace', 'check', ws) as { ok: boolean }).ok, true);
  rmSync(ws, { recursive: true, force: true });
});
