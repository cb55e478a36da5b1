// Runs through the application, as every front end drives them (native/app: the queue and the recorder): a trainer
// that dies without a result ends `interrupted` and resumes to the end, one that reports an error ends `failed`; a
// full disk — SQLite's, a checkpoint's in the trainer process, or one too small before the first step — fails the run
// with one message naming the workspace and the space needed, and the application (and the service over it) goes on.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runConfig, type Events } from '../native/contract/index.js';
import { createService } from '../native/api/service.js';
import { Application, type StartTrainer } from '../native/app/index.js';
import { startTrainer } from '../native/train/process.js';

const DEMO = fileURLToPath(new URL('../native/demo/', import.meta.url));
const DISK_FULL =
  /^the disk of (.+) is full: [\d.]+ (bytes|KB|MB|GB|TB) free, a run of this model needs about [\d.]+ (KB|MB|GB) \(checkpoints, plugin, metrics\); free space and resume it$/;

/** The reviews of the demo, as imported in every test here. */
const REVIEWS = {
  path: join(DEMO, 'reviews-train.csv'),
  name: 'reviews',
  task: 'classification' as const,
  columns: {},
  validationFraction: 0.1,
  seed: 0,
};
/** A LoRA run of 30 steps that checkpoints every 5 (about 2 s on a CPU). */
const LORA_RUN = {
  deltas: [{ method: 'lora' }],
  maxSteps: 30,
  batchSize: 8,
  maxLength: 32,
  device: 'cpu',
  checkpointEvery: 5,
};

/** Opens (creating) the workspace `ws` with the demo model and reviews imported; returns how to start a run there. */
async function demoWorkspace(app: Application, ws: string): Promise<(over?: object) => Promise<string>> {
  await app.open(ws, true);
  const model = app.models.import({ path: join(DEMO, 'backbone'), copy: false });
  const ds = await app.datasets.import(REVIEWS);
  return async (over = {}) =>
    (await app.runs.start(runConfig.parse({ modelId: model.id, datasetVersionId: ds.versionId, ...LORA_RUN, ...over })))
      .runId;
}

/** Runs `fn` with an environment variable set: the fault injections read it, here and in the trainer's process. */
async function withEnv<T>(name: string, value: string, fn: () => Promise<T>): Promise<T> {
  process.env[name] = value;
  try {
    return await fn();
  } finally {
    delete process.env[name];
  }
}

async function setUp(
  startTrainerHook?: StartTrainer,
): Promise<{ app: Application; dir: string; run: (over?: object) => Promise<string> }> {
  const dir = mkdtempSync(join(tmpdir(), 'ds-app-runs-'));
  const app = new Application({ stateDir: join(dir, 'state'), flushMs: 0, startTrainer: startTrainerHook });
  return { app, dir, run: await demoWorkspace(app, join(dir, 'ws')) };
}

describe('a trainer that stops without a result', () => {
  let app: Application;
  let dir: string;
  let run: (over?: object) => Promise<string>;
  // What the next trainer does to itself: killed at a step's checkpoint, or pointed at a model that is not there.
  let killAtCheckpoint: number | null = null;
  let brokenModel = false;
  before(async () => {
    ({ app, dir, run } = await setUp((config, data, onEvent) => {
      if (brokenModel) config = { ...config, model: join(dir, 'no-such-model') };
      const job = startTrainer(config, data, (e) => {
        onEvent?.(e);
        if (killAtCheckpoint !== null && e.type === 'checkpoint' && e.step >= killAtCheckpoint) {
          killAtCheckpoint = null;
          process.kill(job.pid, 'SIGKILL'); // as the OOM killer, a crash or `kill -9` would
        }
      });
      return job;
    }));
  });
  after(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a trainer killed mid-run ends interrupted, saying how, and runs.resume finishes it', async () => {
    killAtCheckpoint = 10;
    const runId = await run({ plugin: 'killed' });
    const out = await app.queue.outcome(runId);
    assert.equal(out.status, 'interrupted', String(out.reason));
    assert.match(
      out.reason ?? '',
      /ended without a result \(signal SIGKILL\); resume the run from its last checkpoint/,
    );
    const row = app.runs.get(runId).run;
    assert.equal(row.status, 'interrupted');
    assert.ok(row.steps >= 10 && row.steps < 30, `steps recorded before the kill: ${row.steps}`);

    assert.equal(app.runs.resume(runId).runId, runId);
    const resumed = await app.queue.outcome(runId);
    assert.equal(resumed.status, 'finished', String(resumed.reason));
    assert.equal(resumed.result?.steps, 30);
    assert.deepEqual([resumed.plugin?.plugin, resumed.plugin?.version], ['killed', 1]);
  });

  test('a trainer that reports an error ends failed with its message', async () => {
    brokenModel = true;
    try {
      const runId = await run({ plugin: 'broken' });
      const out = await app.queue.outcome(runId);
      assert.equal(out.status, 'failed');
      assert.match(out.reason ?? '', /no-such-model/);
      assert.doesNotMatch(out.reason ?? '', /ended without a result/);
      assert.equal(app.runs.get(runId).run.status, 'failed');
    } finally {
      brokenModel = false;
    }
  });
});

describe('a full disk', () => {
  let app: Application;
  let dir: string;
  let run: (over?: object) => Promise<string>;
  const statuses: Events['run.status'][] = [];
  before(async () => {
    ({ app, dir, run } = await setUp());
    app.events.on('run.status', (d) => void statuses.push(d));
  });
  after(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const ws = (): string => join(dir, 'ws');
  /** The run's end: failed with the one disk-full message naming the workspace, told once to the UI. */
  async function failsWithDiskFull(runId: string): Promise<string> {
    const out = await app.queue.outcome(runId);
    assert.equal(out.status, 'failed', String(out.reason));
    const m = DISK_FULL.exec(out.reason ?? '');
    assert.ok(m, `one clear message: ${out.reason}`);
    assert.equal(m[1], ws());
    const row = app.runs.get(runId).run;
    assert.deepEqual([row.status, row.reason], ['failed', out.reason]);
    const ends = statuses.filter((s) => s.runId === runId && s.status !== 'running' && s.status !== 'queued');
    assert.deepEqual(
      ends.map((s) => [s.status, s.reason]),
      [['failed', out.reason]],
    );
    return out.reason!;
  }
  /** The application goes on: the run resumes to its plugin once there is room. */
  async function resumesToTheEnd(runId: string): Promise<void> {
    assert.ok(app.runs.list().some((r) => r.id === runId));
    app.runs.resume(runId);
    const out = await app.queue.outcome(runId);
    assert.equal(out.status, 'finished', String(out.reason));
    assert.equal(out.result?.steps, 30);
    assert.ok(out.plugin);
  }

  test('SQLite full while writing metrics: the trainer is stopped and the run fails with one message', async () => {
    const db = app.workspace!.db;
    const runId = await run({ plugin: 'sqlite-full' });
    // The database may not grow by a page once training is under way: SQLite answers SQLITE_FULL.
    const off = app.events.on('run.progress', (d) => {
      if (d.runId !== runId || d.step < 3) return;
      off();
      db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
    });
    await failsWithDiskFull(runId);
    assert.ok(app.runs.get(runId).run.steps < 30, 'stopped before its end');
    db.pragma('max_page_count = 1073741823');
    await resumesToTheEnd(runId);
  });

  test("a checkpoint that does not fit, in the trainer's process, comes back as the same message", async () => {
    // Set before the run starts: its trainer process inherits it.
    const runId = await withEnv('DELTA_STUDIO_DISK_FULL', 'checkpoints/step-00000010', async () => {
      const id = await run({ plugin: 'checkpoint-full' });
      await failsWithDiskFull(id);
      return id;
    });
    const ckpts = readdirSync(join(app.runs.file(runId).dir, 'checkpoints'));
    assert.deepEqual(
      ckpts.filter((f) => f.endsWith('.tmp')),
      [],
      'no half-written checkpoint is left',
    );
    await resumesToTheEnd(runId);
  });

  test('a disk too small for the run is refused before the first step', async () => {
    const runId = await withEnv('DELTA_STUDIO_FREE_BYTES', '300000', async () => {
      const id = await run({ plugin: 'too-small' });
      assert.match(await failsWithDiskFull(id), /: 300 KB free, /);
      return id;
    });
    const runDir = app.runs.file(runId).dir;
    assert.equal(existsSync(join(runDir, 'checkpoints')), false, 'nothing written');
    assert.equal(app.runs.get(runId).run.steps, 0);
    await resumesToTheEnd(runId);
  });
});

test('the service stays up through a run that fills the disk, and serves the next one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ds-app-service-'));
  const service = createService({ stateDir: join(dir, 'state'), workspace: join(dir, 'ws') });
  const h = service.handlers;
  const statuses: Events['run.status'][] = [];
  service.events.on('run.status', (d) => void statuses.push(d));
  const ended = (runId: string): Promise<Events['run.status']> =>
    new Promise((resolve) => {
      const seen = (d: Events['run.status']): void => {
        if (d.runId !== runId || ['queued', 'running', 'paused'].includes(d.status)) return;
        service.events.off('run.status', seen);
        resolve(d);
      };
      service.events.on('run.status', seen);
    });
  try {
    const model = await h['models.import']({ path: join(DEMO, 'backbone'), copy: false });
    const imported = new Promise<unknown>((resolve) => service.events.on('job.done', (e) => resolve(e.result)));
    await h['datasets.import'](REVIEWS);
    const { versionId } = (await imported) as { versionId: number };
    const cfg = { modelId: model.id, datasetVersionId: versionId, ...LORA_RUN };
    // Every metrics transaction fails as on a full disk (ENOSPC inside the transaction).
    const first = await withEnv('DELTA_STUDIO_DISK_FULL', 'metrics of', async () =>
      ended((await h['runs.start'](runConfig.parse({ ...cfg, plugin: 'full' }))).runId),
    );
    assert.equal(first.status, 'failed');
    assert.match(first.reason ?? '', DISK_FULL);
    assert.equal((await h['runs.get']({ runId: first.runId })).run.status, 'failed');
    const { runId } = await h['runs.start'](runConfig.parse({ ...cfg, plugin: 'after' }));
    const next = await ended(runId);
    assert.deepEqual([next.status, next.plugin], ['finished', { name: 'after', version: 1 }]);
  } finally {
    await service.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run on a dataset with no validation rows is refused before it is recorded, unless none was asked for', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ds-app-novalid-'));
  const app = new Application({ stateDir: join(dir, 'state') });
  try {
    await app.open(join(dir, 'ws'), true);
    const model = app.models.import({ path: join(DEMO, 'backbone'), copy: false });
    const file = join(dir, 'same.csv');
    writeFileSync(file, 'text,label\ngood film,pos\ngood film,pos\ngood film,pos\n');
    const importAs = (name: string, validationFraction: number) =>
      app.datasets.import({ path: file, name, task: 'classification', columns: {}, validationFraction, seed: 0 });
    const cfg = (datasetVersionId: number) =>
      runConfig.parse({
        modelId: model.id,
        datasetVersionId,
        deltas: [{ method: 'bitfit' }],
        maxSteps: 2,
        batchSize: 2,
        maxLength: 16,
        device: 'cpu',
      });
    const asked = await importAs('asked', 0.1);
    assert.equal(asked.rows.validation, 0);
    await assert.rejects(
      () => app.runs.start(cfg(asked.versionId)),
      (e: Error & { error?: { code: string } }) => {
        assert.equal(e.error?.code, 'bad-params');
        assert.match(
          e.message,
          /^dataset asked: the dataset version [0-9a-f]{12} has no validation rows \(a validation fraction of 0.1 was asked for, but its 3 rows \(1 distinct\) all stayed in train.*import it again with a validation file or more distinct rows, or with a validation fraction of 0 to train without evaluation$/,
        );
        return true;
      },
    );
    assert.deepEqual(app.runs.list(), [], 'nothing recorded');
    const none = await importAs('none', 0);
    const { runId } = await app.runs.start(cfg(none.versionId));
    const out = await app.queue.outcome(runId);
    assert.equal(out.status, 'finished', String(out.reason));
    assert.deepEqual(out.result?.metrics, {});
  } finally {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * A real small disk: a tmpfs mounted for the test, as root or through `sudo -n` (owned by this user). A machine where
 * neither can mount fails this test, saying so: it is not skipped.
 */
function smallDisk(size: string): { dir: string; release: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'ds-small-disk-'));
  const root = process.getuid?.() === 0;
  const sudo = root ? [] : ['sudo', '-n'];
  const opts = `size=${size}${root ? '' : `,uid=${process.getuid?.()},gid=${process.getgid?.()}`}`;
  const cmd = [...sudo, 'mount', '-t', 'tmpfs', '-o', opts, 'tmpfs', dir];
  try {
    execFileSync(cmd[0], cmd.slice(1), { stdio: 'ignore' });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`this test needs a small real disk: \`${cmd.join(' ')}\` failed (${(e as Error).message})`, {
      cause: e,
    });
  }
  return {
    dir,
    release: () => {
      execFileSync(sudo[0] ?? 'umount', [...(sudo.length ? sudo.slice(1).concat('umount') : []), '-l', dir], {
        stdio: 'ignore',
      });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('on a real disk that fills up mid-run, every writer that hits it gives the one message; the run resumes once there is room', async () => {
  const disk = smallDisk('3m');
  const app = new Application({ flushMs: 0 });
  try {
    const run = await demoWorkspace(app, join(disk.dir, 'ws'));
    const filler = join(disk.dir, 'filler');
    const free = (): number => {
      const s = statfsSync(disk.dir);
      return s.bavail * s.bsize;
    };
    // Another program fills the disk after the run's start, leaving this much: the checkpoint in the trainer, the
    // metrics in SQLite (its journal), the delta or the plugin, whichever writes next, hits the wall.
    let last = '';
    for (const leave of [0, 60_000, 200_000]) {
      const runId = await run();
      const off = app.events.on('run.progress', (d) => {
        if (d.runId !== runId || d.step < 3) return;
        off();
        try {
          writeFileSync(filler, Buffer.alloc(Math.max(0, free() - leave)));
        } catch {
          /* filled to the last byte */
        }
      });
      const out = await app.queue.outcome(runId);
      assert.equal(out.status, 'failed', `leaving ${leave} bytes: ${out.reason}`);
      assert.match(out.reason ?? '', DISK_FULL, `leaving ${leave} bytes`);
      assert.equal(DISK_FULL.exec(out.reason!)![1], join(disk.dir, 'ws'));
      last = runId;
      rmSync(filler, { force: true });
    }
    // A dataset import on the full disk: the same words, naming what the import needs.
    writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 20_000)));
    await assert.rejects(
      app.datasets.import({ ...REVIEWS, path: join(DEMO, 'reviews-test.csv'), name: 'more' }),
      (e: Error) => {
        assert.match(
          e.message,
          /^the disk of .+\/ws\/datasets is full: [\d.]+ (bytes|KB) free, importing reviews-test\.csv needs about [\d.]+ KB; free space and import it again$/,
        );
        return true;
      },
    );
    rmSync(filler, { force: true });
    app.runs.resume(last);
    const out = await app.queue.outcome(last);
    assert.equal(out.status, 'finished', String(out.reason));
    assert.ok(out.plugin);
  } finally {
    await app.close();
    disk.release();
  }
});
