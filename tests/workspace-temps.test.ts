// `workspace check --repair` and the temp files of live processes: an import running in another process keeps its
// temp folders and finishes; a temp held by a live process is reported in use and left alone, one made on another
// machine too, and once its process is gone it is cleaned like any leftover.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkWorkspace } from '../native/store/check.js';
import { Workspace } from '../native/store/workspace.js';
import { hostTag, parseTemp, tempName } from '../native/files/temp.js';

const APP = new URL('../native/app/index.ts', import.meta.url).href;
const TEMP = new URL('../native/files/temp.ts', import.meta.url).href;
const TSX = import.meta.resolve('tsx');

/** A Node child running `script` (ES module source) from this repository's sources; its stdout and exit collected. */
function child(script: string): { pid: number; out: () => string; exit: Promise<number | null> } {
  const p = spawn(process.execPath, ['--import', TSX, '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += String(d)));
  return { pid: p.pid!, out: () => out, exit: new Promise((r) => p.on('close', (code) => r(code))) };
}

const until = async (what: string, ok: () => boolean, ms = 60_000): Promise<void> => {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

test('temp names carry their owner: pid and host', () => {
  const name = tempName('model.safetensors');
  assert.match(name, new RegExp(`^\\.model\\.safetensors\\.${process.pid}@${hostTag()}\\.[0-9a-f]{8}\\.tmp$`));
  assert.deepEqual(parseTemp(name), { owner: { pid: process.pid, host: hostTag() } });
  // An import's folders, nested names included, and what earlier versions wrote.
  assert.deepEqual(parseTemp(`.${tempName('import')}.importing.12@box.00ff00ff.tmp`), {
    owner: { pid: 12, host: 'box' },
  });
  assert.deepEqual(parseTemp('.ds.importing-77-00ff00ff'), { owner: { pid: 77, host: null } });
  assert.deepEqual(parseTemp('.x.delta.77.1733333333333.tmp'), { owner: { pid: 77, host: null } });
  assert.deepEqual(parseTemp('.import-00ff00ff'), { owner: null });
  assert.equal(parseTemp('reviews-v1.delta'), null);
  assert.equal(hostTag('gpu.example.org'), 'gpu-example-org');
});

test('check --repair during an import in another process leaves its temp folders, and the import finishes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ds-temps-'));
  try {
    Workspace.init(join(dir, 'ws')).close();
    // Big enough that the import takes a while: rows are streamed into the temp folders meanwhile.
    const file = join(dir, 'big.csv');
    const fd = openSync(file, 'w');
    writeSync(fd, 'text,label\n');
    for (let i = 0; i < 200; i++)
      writeSync(
        fd,
        Array.from({ length: 1000 }, (_, j) => `row ${i * 1000 + j} of a long text,${j % 2 ? 'pos' : 'neg'}\n`).join(
          '',
        ),
      );
    closeSync(fd);
    const importer = child(`
      const { Application } = await import(${JSON.stringify(APP)});
      const app = new Application();
      await app.open(${JSON.stringify(join(dir, 'ws'))}, false);
      const r = await app.datasets.import({ path: ${JSON.stringify(file)}, name: 'big', task: 'classification',
        columns: {}, validationFraction: 0.1, seed: 0 });
      await app.close();
      console.log(JSON.stringify(r));`);
    const datasets = join(dir, 'ws', 'datasets');
    const inProgress = (): string[] => readdirSync(datasets).filter((n) => n.startsWith('.'));
    // The importer streams the rows into its temp folder in datasets/ (renamed into place at the end).
    await until('the import to be under way', () => inProgress().length >= 1);
    const held = inProgress();
    const report = checkWorkspace(join(dir, 'ws'), { repair: true });
    const temps = report.problems.filter((p) => p.kind === 'temp');
    assert.deepEqual(
      report.problems.filter((p) => p.kind !== 'temp'),
      [],
      JSON.stringify(report.problems),
    );
    assert.deepEqual(temps.map((p) => p.path).sort(), held.map((n) => `datasets/${n}`).sort());
    for (const p of temps) {
      assert.equal(
        p.message,
        `in use by process ${importer.pid} on this machine (a write or import in progress); left alone`,
      );
      assert.equal(p.repaired, undefined);
    }
    assert.ok(
      held.every((n) => existsSync(join(datasets, n))),
      'nothing moved or deleted',
    );
    assert.deepEqual(readdirSync(join(dir, 'ws', 'lost+found')), []);
    assert.equal(await importer.exit, 0, 'the import finished');
    const imported = JSON.parse(importer.out().trim().split('\n').pop()!) as {
      rows: { train: number; validation: number };
    };
    assert.equal(imported.rows.train + imported.rows.validation, 200_000);
    const after = checkWorkspace(join(dir, 'ws'));
    assert.deepEqual(after.problems, []);
    assert.equal(after.checked.datasets, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a temp held by a live process is left alone; once the process is gone, repair deletes it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ds-temps-'));
  let holder: ReturnType<typeof child> | undefined;
  try {
    const ws = Workspace.init(join(dir, 'ws'));
    ws.createRun({ id: 'r1', config: {}, method: 'lora', dir: 'runs/r1' });
    ws.close();
    mkdirSync(join(dir, 'ws', 'runs', 'r1', 'checkpoints'), { recursive: true });
    mkdirSync(join(dir, 'ws', 'plugins', 'p'), { recursive: true });
    // A second process holding temps where an atomic write, a checkpoint and a model copy make them.
    holder = child(`
      import { mkdirSync, writeFileSync } from 'node:fs';
      const { tempName } = await import(${JSON.stringify(TEMP)});
      const ws = ${JSON.stringify(join(dir, 'ws'))};
      const made = [
        'plugins/p/' + tempName('p-v1.delta'),
        'runs/r1/checkpoints/' + tempName('step-00000005.safetensors'),
        'models/' + tempName('copy'),
      ];
      for (const rel of made) rel.startsWith('models/') ? mkdirSync(ws + '/' + rel) : writeFileSync(ws + '/' + rel, 'x');
      console.log(JSON.stringify(made));
      setInterval(() => {}, 1000);`);
    const { pid, out, exit } = holder;
    await until('the holder to make its temps', () => out().includes(']'));
    const made = JSON.parse(out()) as string[];
    // And one made on another machine sharing this folder: nobody here can tell whether it is still in use.
    const foreign = `plugins/p/.p-v2.delta.4242@other-machine.0badf00d.tmp`;
    closeSync(openSync(join(dir, 'ws', foreign), 'w'));

    const live = checkWorkspace(join(dir, 'ws'), { repair: true });
    const byPath = new Map(live.problems.map((p) => [p.path, p]));
    for (const rel of made) {
      assert.match(byPath.get(rel)?.message ?? '', new RegExp(`^in use by process ${pid} on this machine`));
      assert.ok(existsSync(join(dir, 'ws', rel)), `${rel} left alone`);
    }
    assert.equal(
      byPath.get(foreign)?.message,
      'made by process 4242 on other-machine, which cannot be asked from here; left alone (delete it once that process has ended)',
    );
    assert.ok(live.problems.every((p) => p.repaired === undefined));

    process.kill(pid, 'SIGKILL');
    await exit;
    const dead = checkWorkspace(join(dir, 'ws'), { repair: true });
    for (const rel of made) {
      const p = dead.problems.find((x) => x.path === rel);
      assert.deepEqual([p?.message, p?.repaired], ['unfinished temporary file of an interrupted write', 'deleted']);
      assert.equal(existsSync(join(dir, 'ws', rel)), false);
    }
    assert.ok(existsSync(join(dir, 'ws', foreign)));
  } finally {
    try {
      process.kill(holder!.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
