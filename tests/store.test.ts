// The workspace store: creation, migration of every earlier schema version (fixture workspaces as those versions
// wrote them), refusal of a newer one, run records and metric series, the plugin library (versions, aliases, tags,
// sha256 verification), crash recovery of runs, concurrent writers and read-only disks.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { DB_FILE, Workspace, WorkspaceError } from '../native/store/workspace.js';
import { checkWorkspace } from '../native/store/check.js';
import { SCHEMA_VERSION, MIGRATIONS } from '../native/store/migrations/index.js';
import { PluginError } from '../native/plugins/format.js';
import { Rng } from '../native/rng.js';

const fixtures = fileURLToPath(new URL('./fixtures/workspaces/', import.meta.url));
const tmp = (): string => mkdtempSync(join(tmpdir(), 'ds-store-'));
const schemaOf = (file: string): string[] => {
  const db = new Database(file, { readonly: true });
  const rows = db
    .prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
    .all() as { type: string; name: string; sql: string }[];
  db.close();
  return rows.map((r) => `${r.type} ${r.name}: ${r.sql.replace(/\s+/g, ' ')}`);
};
const meta = (metrics: Record<string, number>) => ({
  methods: [{ method: 'lora', r: 2, alpha: 4 }],
  task: 'classification' as const,
  labels: ['neg', 'pos'],
  base: { fingerprint: 'a'.repeat(64), modelType: 'llama', name: 'base' },
  metrics,
});
const tensors = (seed: number) => {
  const rng = new Rng(seed);
  return {
    'q.lora_A': {
      dtype: 'float32' as const,
      shape: [2, 8],
      data: Float32Array.from({ length: 16 }, () => rng.normal()),
    },
  };
};

describe('workspace schema', () => {
  test('init makes the folders and the latest schema; init of an existing workspace opens it', () => {
    const dir = join(tmp(), 'new-ws');
    const ws = Workspace.init(dir);
    assert.equal(ws.schemaVersion, SCHEMA_VERSION);
    assert.equal(SCHEMA_VERSION, MIGRATIONS.length);
    for (const f of ['datasets', 'runs', 'plugins', 'exports', 'models', 'lost+found'])
      assert.ok(statSync(join(dir, f)).isDirectory(), f);
    assert.equal(ws.db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(ws.db.pragma('foreign_keys', { simple: true }), 1);
    assert.ok((ws.db.pragma('busy_timeout', { simple: true }) as number) >= 5000);
    ws.close();
    Workspace.init(dir).close();
    assert.throws(
      () => Workspace.open(join(dir, 'runs')),
      (e: Error) =>
        e instanceof WorkspaceError &&
        /not a Delta Studio workspace \(no workspace.db\); create one with 'delta-studio workspace init/.test(
          e.message,
        ),
    );
  });

  for (let v = 1; v < SCHEMA_VERSION; v++) {
    test(`a workspace written by schema version ${v} migrates to ${SCHEMA_VERSION} without losing anything`, () => {
      assert.ok(
        existsSync(join(fixtures, `v${v}`, DB_FILE)),
        `tests/fixtures/workspaces/v${v} exists (make it with make_workspaces.ts when adding a migration)`,
      );
      const dir = tmp();
      cpSync(join(fixtures, `v${v}`), dir, { recursive: true });
      const before = readFileSync(join(dir, DB_FILE));
      const ws = Workspace.open(dir);
      assert.equal(ws.schemaVersion, SCHEMA_VERSION);
      assert.equal(ws.migratedFrom, v);
      // The backup is the old database, byte for byte in content: it opens as version v with the same rows.
      assert.ok(ws.backup && existsSync(ws.backup));
      const bak = new Database(ws.backup, { readonly: true });
      assert.equal(bak.pragma('user_version', { simple: true }), v);
      assert.equal((bak.prepare('SELECT COUNT(*) AS n FROM metrics').get() as { n: number }).n, 191);
      bak.close();
      assert.ok(before.length > 0);
      // Same schema as a workspace created new.
      const fresh = join(tmp(), 'fresh');
      Workspace.init(fresh).close();
      ws.close();
      assert.deepEqual(schemaOf(join(dir, DB_FILE)), schemaOf(join(fresh, DB_FILE)));
      const ws2 = Workspace.open(dir);
      const runs = ws2.listRuns();
      assert.deepEqual(
        runs.map((r) => [r.id, r.status]),
        [
          ['20261101T100000-aaaaaa', 'finished'],
          ['20261101T110000-bbbbbb', 'interrupted'],
        ],
      );
      const loss = ws2.metricSeries('20261101T100000-aaaaaa', 'loss');
      assert.equal(loss.length, 150);
      assert.equal(loss[149].value, 0.7 * Math.exp(-150 / 50));
      assert.deepEqual(ws2.metricSeries('20261101T110000-bbbbbb', 'loss')[39], { step: 40, value: null, nan: true });
      assert.deepEqual(ws2.latestMetrics('20261101T100000-aaaaaa'), { accuracy: 0.995, loss: 0.7 * Math.exp(-3) });
      assert.equal(JSON.parse(runs[0].config).deltas[0].r, 8);
      assert.equal(ws2.lineage.length, 1);
      if (v >= 2) {
        const p = ws2.showPlugin('reviews-lora');
        assert.deepEqual(p.aliases, { best: 1, latest: 1, production: 1 });
        assert.deepEqual(p.versions[0].tags, ['demo', 'sentiment']);
        assert.equal(p.versions[0].notes, 'first try');
        assert.equal(ws2.loadPlugin('reviews-lora@production').meta.metrics.accuracy, 0.995);
        const lin = ws2.lineage('reviews-lora');
        assert.equal(lin.run?.id, '20261101T100000-aaaaaa');
        assert.equal(lin.dataset?.dataset, 'reviews');
        assert.equal(lin.model?.name, 'demo-backbone');
      }
      ws2.close();
      const report = checkWorkspace(dir);
      assert.ok(report.ok, JSON.stringify(report.problems));
    });
  }

  test('a workspace from a newer Delta Studio is refused with a clear message and left untouched', () => {
    const dir = tmp();
    Workspace.init(dir).close();
    const db = new Database(join(dir, DB_FILE));
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.pragma('journal_mode = DELETE');
    db.close();
    const before = readFileSync(join(dir, DB_FILE));
    assert.throws(
      () => Workspace.open(dir),
      (e: Error) =>
        e instanceof WorkspaceError &&
        e.code === 'newer-schema' &&
        e.message.includes(
          `written by a newer Delta Studio (schema version ${SCHEMA_VERSION + 1}; this one knows up to ${SCHEMA_VERSION}). Update Delta Studio`,
        ),
    );
    assert.deepEqual(readFileSync(join(dir, DB_FILE)), before);
    assert.ok(!readdirSync(dir).some((f) => f.endsWith('.bak')));
  });

  test('a damaged database is reported by check, which names the backups', () => {
    const dir = tmp();
    cpSync(join(fixtures, 'v1'), dir, { recursive: true });
    Workspace.open(dir).close();
    const file = join(dir, DB_FILE);
    const bytes = readFileSync(file);
    bytes.fill(0x41, 4096, 12288); // overwrite pages 2–3
    writeFileSync(file, bytes);
    rmSync(`${file}-wal`, { force: true });
    assert.throws(
      () => Workspace.open(dir),
      (e: Error) => e instanceof WorkspaceError && e.code === 'damaged' && /workspace check/.test(e.message),
    );
    const r = checkWorkspace(dir);
    assert.equal(r.ok, false);
    assert.ok(
      r.problems.some((p) => p.message.includes('workspace.db.v1.bak')),
      JSON.stringify(r.problems),
    );
  });
});

describe('runs and metrics', () => {
  test('a run records status, timings and append-only metric series; a resumed step replaces the earlier record', () => {
    const ws = Workspace.init(tmp());
    const id = Workspace.newRunId();
    ws.createRun({ id, config: { lr: 1e-3 }, method: 'lora', dir: `runs/${id}` });
    assert.equal(ws.getRun(id).status, 'queued');
    ws.startRun(id, { device: 'cpu', totalSteps: 10 });
    assert.equal(ws.getRun(id).status, 'running');
    assert.equal(ws.getRun(id).pid, process.pid);
    ws.appendMetrics(id, [
      { key: 'train/loss', step: 1, value: 2 },
      { key: 'train/loss', step: 2, value: Number.NaN },
      { key: 'train/loss', step: 3, value: Infinity },
    ]);
    ws.appendMetrics(id, [{ key: 'train/loss', step: 2, value: 1.5 }]);
    assert.deepEqual(ws.metricSeries(id, 'train/loss'), [
      { step: 1, value: 2, nan: false },
      { step: 2, value: 1.5, nan: false },
      { step: 3, value: Infinity, nan: false },
    ]);
    assert.equal(ws.latestMetrics(id)['train/loss'], Infinity);
    assert.equal(ws.getRun(id).steps, 3);
    assert.throws(() => ws.db.prepare('UPDATE metrics SET value = 0').run(), /append-only/);
    ws.finishRun(id, { status: 'finished', steps: 10, tokensPerSec: 1000, trainSeconds: 2 });
    const r = ws.getRun(id);
    assert.equal(r.status, 'finished');
    assert.equal(r.pid, null);
    assert.ok(r.finished_at);
    assert.throws(() => ws.startRun(id), /has finished/);
    assert.throws(() => ws.setRunStatus(id, 'exploded' as never), /unknown run status "exploded"/);
    assert.equal(ws.getRun(id.slice(0, 18)).id, id, 'a unique prefix names a run');
    ws.close();
  });

  test('a run left running by a dead process becomes interrupted on open; a live one does not', async () => {
    const dir = tmp();
    const ws = Workspace.init(dir);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    for (const [id, pid] of [
      ['dead-run', Number(dead.stdout)],
      ['live-run', live.pid!],
    ] as const) {
      ws.createRun({ id, config: {}, method: 'lora', dir: `runs/${id}` });
      ws.startRun(id, { pid });
    }
    ws.close();
    const again = Workspace.open(dir);
    assert.deepEqual(again.recovered, ['dead-run']);
    assert.equal(again.getRun('dead-run').status, 'interrupted');
    assert.match(again.getRun('dead-run').reason!, /stopped without finishing.*resume it/);
    assert.equal(again.getRun('live-run').status, 'running');
    again.close();
    // A worker thread of this process (an export) opens without recovery: our own running run stays running.
    const mine = Workspace.open(dir);
    mine.createRun({ id: 'mine', config: {}, method: 'lora', dir: 'runs/mine' });
    mine.startRun('mine');
    mine.close();
    const helper = Workspace.open(dir, { recover: false });
    assert.deepEqual(helper.recovered, []);
    assert.equal(helper.getRun('mine').status, 'running');
    helper.close();
    live.kill();
    await new Promise((r) => live.on('close', r));
  });
});

describe('plugin library', () => {
  test('versions number themselves, latest and best move, aliases and tags are kept', () => {
    const ws = Workspace.init(tmp());
    const accs = [0.8, 0.9, 0.85];
    accs.forEach((a, i) =>
      ws.registerPlugin({ name: 'sst2-lora', tensors: tensors(i), meta: meta({ accuracy: a, loss: 1 - a }) }),
    );
    const shown = ws.showPlugin('sst2-lora');
    assert.deepEqual(
      shown.versions.map((v) => v.version),
      [1, 2, 3],
    );
    assert.deepEqual(shown.aliases, { best: 2, latest: 3 });
    assert.equal(ws.resolvePlugin('sst2-lora').version, 3);
    assert.equal(ws.resolvePlugin('sst2-lora@best').version, 2);
    assert.equal(ws.resolvePlugin('sst2-lora@1').version, 1);
    ws.setAlias('sst2-lora@1', 'production');
    assert.equal(ws.resolvePlugin('sst2-lora@production').version, 1);
    assert.throws(() => ws.setAlias('sst2-lora@2', 'latest'), /always names the newest version/);
    assert.throws(() => ws.setAlias('sst2-lora@2', '../x'), /must start with a letter/);
    assert.deepEqual(ws.tag('sst2-lora@2', ['good', 'sentiment']), ['good', 'sentiment']);
    assert.deepEqual(ws.tag('sst2-lora@2', [], ['good']), ['sentiment']);
    ws.setNotes('sst2-lora@2', 'lr 5e-3');
    assert.equal(ws.showPlugin('sst2-lora').versions[1].notes, 'lr 5e-3');
    assert.throws(() => ws.resolvePlugin('sst2-lora@9'), /has no version "9"/);
    assert.throws(() => ws.resolvePlugin('nope'), /no plugin "nope" .*\(plugins: sst2-lora\)/);
    assert.throws(
      () => ws.registerPlugin({ name: '../evil', tensors: tensors(0), meta: meta({}) }),
      /must be letters, digits/,
    );
    const p = ws.loadPlugin('sst2-lora@2');
    assert.deepEqual(Array.from(p.tensors['q.lora_A'].data as Float32Array), Array.from(tensors(1)['q.lora_A'].data));
    assert.equal(p.meta.version, 2);
    assert.equal(p.meta.plugin, 'sst2-lora');
    ws.close();
  });

  test('a tampered or truncated plugin file is refused on load and reported by check', () => {
    const dir = tmp();
    const ws = Workspace.init(dir);
    const v1 = ws.registerPlugin({ name: 'p', tensors: tensors(1), meta: meta({ accuracy: 0.5 }) });
    const v2 = ws.registerPlugin({ name: 'p', tensors: tensors(2), meta: meta({ accuracy: 0.6 }) });
    const f1 = ws.path(v1.file),
      f2 = ws.path(v2.file);
    const b = readFileSync(f1);
    b[b.length - 3] ^= 0x10;
    writeFileSync(f1, b);
    assert.throws(
      () => ws.loadPlugin('p@1'),
      (e: Error) =>
        e instanceof PluginError && e.code === 'tampered' && /damaged or changed after it was written/.test(e.message),
    );
    writeFileSync(f2, readFileSync(f2).subarray(0, 200));
    assert.throws(() => ws.loadPlugin('p@2'), /has 200 bytes, the workspace recorded \d+: it is truncated/);
    ws.close();
    const r = checkWorkspace(dir);
    assert.equal(r.ok, false);
    assert.deepEqual(r.problems.map((p) => [p.kind, p.path]).sort(), [
      ['corrupt', v1.file],
      ['corrupt', v2.file],
    ]);
  });

  test('concurrent processes registering versions of one plugin get distinct versions, never "database is locked"', async () => {
    const dir = tmp();
    Workspace.init(dir).close();
    const script = `
      import { Workspace } from ${JSON.stringify(fileURLToPath(new URL('../native/store/workspace.ts', import.meta.url)))};
      const ws = Workspace.open(process.argv[1]);
      for (let i = 0; i < 15; i++) ws.registerPlugin({ name: 'shared', tensors: { w: { dtype: 'float32', shape: [4], data: new Float32Array([i, 1, 2, 3]) } }, meta: { methods: [{ method: 'bitfit' }], task: 'regression', base: { fingerprint: 'b'.repeat(64), modelType: 'bert', name: 'b' }, metrics: {} } });
      ws.close();`;
    const run = () =>
      new Promise<number>((resolve) => {
        const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], {
          stdio: ['ignore', 'inherit', 'inherit'],
        });
        c.on('close', (code) => resolve(code ?? -1));
      });
    assert.deepEqual(await Promise.all([run(), run(), run()]), [0, 0, 0]);
    const ws = Workspace.open(dir);
    assert.deepEqual(
      ws.showPlugin('shared').versions.map((v) => v.version),
      Array.from({ length: 45 }, (_, i) => i + 1),
    );
    ws.close();
    assert.ok(checkWorkspace(dir).ok);
  });
});

describe('read-only disks', () => {
  // A real read-only file system: a read-only bind mount in a private mount namespace (needs root, as CI and this
  // machine have), else a folder without write permission (enough for a non-root user).
  const readOnly = (dir: string, body: string): { status: number | null; stdout: string; stderr: string } => {
    const js = `import { Workspace } from ${JSON.stringify(fileURLToPath(new URL('../native/store/workspace.ts', import.meta.url)))};
      const out = {};
      for (const [k, f] of [['open', () => Workspace.open(${JSON.stringify(dir)})], ['init', () => Workspace.init(${JSON.stringify(join(dir, 'sub'))})]]) {
        try { f(); out[k] = 'opened'; } catch (e) { out[k] = { code: e.code, message: e.message }; }
      }
      ${body}
      process.stdout.write(JSON.stringify(out));`;
    const script = join(mkdtempSync(join(tmpdir(), 'ds-ro-script-')), 'probe.mts');
    writeFileSync(script, js);
    const node = `'${process.execPath}' --import tsx '${script}'`;
    if (process.getuid?.() === 0) {
      return spawnSync(
        'unshare',
        ['-m', 'sh', '-c', `mount --bind ${dir} ${dir} && mount -o remount,ro,bind ${dir} && ${node}`],
        { encoding: 'utf8' },
      );
    }
    spawnSync('chmod', ['-R', 'a-w', dir]);
    try {
      return spawnSync('sh', ['-c', node], { encoding: 'utf8' });
    } finally {
      spawnSync('chmod', ['-R', 'u+w', dir]);
    }
  };

  test('opening or creating a workspace on a read-only disk fails clearly and writes nothing', () => {
    const dir = tmp();
    Workspace.init(dir).close();
    const listing = (): string[] => readdirSync(dir).sort();
    const before = listing();
    const r = readOnly(dir, '');
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, { code: string; message: string }>;
    assert.equal(out.open.code, 'read-only');
    assert.match(
      out.open.message,
      /cannot be written \((EROFS: read-only file system|EACCES)\); choose a writable folder/,
    );
    assert.equal(out.init.code, 'read-only');
    assert.match(out.init.message, /sub: cannot create the workspace folder \((EROFS: read-only file system|EACCES)\)/);
    assert.deepEqual(listing(), before);
  });
});

test('workspace paths never leave the workspace', () => {
  const ws = Workspace.init(tmp());
  assert.throws(() => ws.path('../outside'), /escapes/);
  assert.throws(() => ws.path('/etc/passwd'), /escapes/);
  assert.throws(() => ws.createRun({ id: 'x', config: {}, method: 'lora', dir: '../../x' }), /escapes/);
  mkdirSync(ws.path('runs/ok'));
  ws.close();
});
