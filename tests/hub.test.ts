// Models by name from the Hugging Face Hub, against a Hub in the test (tests/support/fake-hub.ts) that answers with the
// paths, redirects, headers and refusals of the real one: the files land in the standard cache layout and the engine
// reads them in place; only what the engine reads is fetched; an interrupted download continues with a Range for
// exactly the missing bytes; every file is checked against its sha256 / git id; a complete commit makes no request,
// and offline the cache answers by name; gated, private, unknown and pickle-only repositories, a full disk and a lost
// network each say what to do; a token is used but never written or printed. Then the same through the application,
// the service (a job with per-file progress events) and the CLI.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ContractError, validateCall, type Events, type HubPullProgress } from '../native/contract/index.js';
import { HubError, pullModel, type PullOptions } from '../native/hub/pull.js';
import { findToken, hubCacheDir } from '../native/hub/settings.js';
import { modelFingerprint } from '../native/plugins/format.js';
import { TextTokenizer } from '../native/models/tokenizer.js';
import { Application } from '../native/app/index.js';
import { createService } from '../native/api/service.js';
import { FakeHub } from './support/fake-hub.js';

const LLAMA = fileURLToPath(new URL('./fixtures/models/llama/', import.meta.url));
const BACKBONE = fileURLToPath(new URL('../native/demo/backbone/', import.meta.url));
const bin = fileURLToPath(new URL('../bin/delta-studio.js', import.meta.url));
const TOKEN = 'hf_testTokenThatMustNeverBeWritten0123';
const OTHER_TOKEN = 'hf_tokenOfAnAccountWithoutAccess9876';

const READ = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'model.safetensors.index.json',
  'model-00001-of-00002.safetensors',
  'model-00002-of-00002.safetensors',
];
const SHARD = 'model-00001-of-00002.safetensors';

/** The llama fixture as a Hub repository, with what the engine must never fetch beside it. */
function llamaRepo(): Record<string, Buffer | string> {
  const files: Record<string, Buffer | string> = Object.fromEntries(READ.map((f) => [f, readFileSync(join(LLAMA, f))]));
  return {
    ...files,
    'pytorch_model.bin': Buffer.alloc(3000, 7),
    'consolidated.safetensors': readFileSync(join(LLAMA, SHARD)),
    'README.md': '# tiny llama\n',
    '.gitattributes': '*.safetensors filter=lfs diff=lfs merge=lfs -text\n',
    'original/params.json': '{}',
  };
}
const backboneRepo = (): Record<string, Buffer> =>
  Object.fromEntries(readdirSync(BACKBONE).map((f) => [f, readFileSync(join(BACKBONE, f))]));

let hub: FakeHub;
let tmp: string;
let llamaCommit: string;
let n = 0;
/** A fresh HF_HOME (so a fresh cache and no token file) pointing at the fake Hub. */
const freshEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
  HF_HOME: join(tmp, `home-${++n}`),
  HF_ENDPOINT: hub.url,
  ...extra,
});
const pull = (env: Record<string, string>, o: Partial<PullOptions> = {}) =>
  pullModel({ repo: 'tiny/llama', env, retryDelayMs: 5, ...o });
async function refused(p: Promise<unknown>, kind: string, message: RegExp): Promise<HubError> {
  const e = await p.then(
    () => assert.fail('expected a refusal'),
    (x: unknown) => x,
  );
  assert.ok(e instanceof HubError, String(e));
  assert.equal(e.kind, kind, e.message);
  assert.match(e.message, message);
  return e;
}
/** The address of a port nobody listens on: a network that is down. */
async function closedPort(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}
/** Every file under `dir` whose bytes contain `needle`. */
function filesHolding(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && readFileSync(p).includes(needle)) hits.push(p);
    }
  };
  if (existsSync(dir)) walk(dir);
  return hits;
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'ds-hub-'));
  hub = await new FakeHub().start();
  hub.tokens.set(TOKEN, '*');
  hub.tokens.set(OTHER_TOKEN, []);
  llamaCommit = hub.commit('tiny/llama', llamaRepo());
  hub.commit('tiny/backbone', backboneRepo());
  hub.commit('tiny/gated', backboneRepo(), { gated: true });
  hub.commit('tiny/private', backboneRepo(), { private: true });
  hub.commit('tiny/pickles', { 'config.json': readFileSync(join(LLAMA, 'config.json')), 'pytorch_model.bin': 'x' });
  hub.commit('tiny/consolidated', {
    'config.json': readFileSync(join(LLAMA, 'config.json')),
    'consolidated.safetensors': readFileSync(join(LLAMA, SHARD)),
  });
});

after(async () => {
  await hub.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('a pull into the Hugging Face cache', () => {
  test('lands in the standard layout, fetches only what the engine reads, and the engine reads it in place', async () => {
    const env = freshEnv();
    const from = hub.requests.length;
    const progress: HubPullProgress[] = [];
    const r = await pull(env, { onProgress: (p) => progress.push(p), progressMs: 0 });
    const repoDir = join(env.HF_HOME, 'hub', 'models--tiny--llama');
    assert.equal(r.commit, llamaCommit);
    assert.equal(r.cacheDir, join(env.HF_HOME, 'hub'));
    assert.equal(r.snapshot, join(repoDir, 'snapshots', llamaCommit));
    assert.deepEqual(
      r.files.map((f) => f.path),
      ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', ...READ.slice(4)],
      'small files first, then the index and its shards',
    );
    assert.ok(r.files.every((f) => f.from === 'network'));
    // snapshots/<commit>/<file> → ../../blobs/<sha256 for LFS files, git oid for the others>; refs/main → commit.
    for (const path of READ) {
      const f = hub.file('tiny/llama', path);
      const link = join(r.snapshot, path);
      assert.ok(lstatSync(link).isSymbolicLink(), path);
      assert.equal(readlinkSync(link), `../../blobs/${f.lfs ? f.sha256 : f.oid}`, path);
      assert.deepEqual(readFileSync(link), readFileSync(join(LLAMA, path)), path);
    }
    assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), llamaCommit);
    assert.deepEqual(
      readdirSync(join(repoDir, 'blobs')).filter((b) => b.endsWith('.incomplete')),
      [],
    );
    assert.deepEqual(readdirSync(r.snapshot).sort(), [...READ].sort());
    // The requests, as @huggingface/hub and the transfer make them against the real Hub.
    const asked = hub.since(from).map((q) => `${q.server} ${q.path}${q.range ? ` ${q.range}` : ''} ${q.status}`);
    assert.deepEqual(asked.slice(0, 3), [
      'hub /api/models/tiny/llama/revision/main 200',
      `hub /api/models/tiny/llama/tree/${llamaCommit} 200`,
      `hub /tiny/llama/resolve/${llamaCommit}/model.safetensors.index.json 200`,
    ]);
    assert.ok(asked.includes(`hub /tiny/llama/resolve/${llamaCommit}/${SHARD} 302`), asked.join('\n'));
    assert.ok(asked.includes(`cdn /blobs/${hub.file('tiny/llama', SHARD).sha256} 200`), asked.join('\n'));
    for (const never of ['pytorch_model.bin', 'consolidated.safetensors', 'README.md', 'params.json'])
      assert.ok(!asked.some((a) => a.includes(never)), `${never} was fetched`);
    // Progress: every file from the start, bytes growing to the total, each file ending done.
    const planned = progress.find((p) => p.files.length === READ.length)!;
    assert.equal(planned.total, r.totalBytes);
    assert.ok(progress.every((p, i) => i === 0 || p.bytes >= progress[i - 1].bytes));
    const last = progress.at(-1)!;
    assert.equal(last.bytes, last.total);
    assert.ok(last.files.every((f) => f.state === 'done' && f.bytes === f.size));
    assert.deepEqual(
      last.files.map((f) => f.path),
      r.files.map((f) => f.path),
      'progress lists the files in the order they are fetched',
    );
    assert.equal(r.fetchedBytes, r.totalBytes);
    // The engine reads the snapshot in place, through the links: the same model and tokenizer as the fixture.
    assert.equal(modelFingerprint(r.snapshot), modelFingerprint(LLAMA));
    assert.deepEqual(
      TextTokenizer.fromFolder(r.snapshot).encode('hello world'),
      TextTokenizer.fromFolder(LLAMA).encode('hello world'),
    );
  });

  test('a complete commit makes no request, a branch asks once, and offline the cache answers by name', async () => {
    const env = freshEnv();
    await pull(env);
    let from = hub.requests.length;
    const byCommit = await pull(env, { revision: llamaCommit });
    assert.equal(hub.since(from).length, 0, 'a complete commit asks nothing');
    assert.equal(byCommit.offline, true);
    assert.ok(byCommit.files.every((f) => f.from === 'cache'));
    from = hub.requests.length;
    const again = await pull(env);
    assert.deepEqual(
      hub.since(from).map((q) => q.path),
      ['/api/models/tiny/llama/revision/main'],
      'a branch: one question (which commit is main now?), no file',
    );
    assert.equal(again.fetchedBytes, 0);
    assert.equal(again.snapshot, byCommit.snapshot);
    from = hub.requests.length;
    const offline = await pull({ ...env, HF_HUB_OFFLINE: '1' });
    assert.equal(hub.since(from).length, 0);
    assert.equal(offline.offline, true);
    assert.match(offline.notes[0], /HF_HUB_OFFLINE/);
    // No network at all: a closed port stands for it.
    const nowhere = await closedPort();
    const down = await pull({ ...env, HF_ENDPOINT: nowhere });
    assert.equal(down.snapshot, byCommit.snapshot);
    assert.match(
      down.notes[0],
      /^could not reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): the cached snapshot of tiny\/llama@main \(commit [0-9a-f]{10}\) was used; it may not be the newest$/,
    );
    await refused(
      pull({ ...env, HF_HUB_OFFLINE: 'true' }, { repo: 'tiny/backbone' }),
      'offline',
      /HF_HUB_OFFLINE is set and the cache .* has no whole snapshot of tiny\/backbone@main/,
    );
    await refused(
      pull(freshEnv({ HF_ENDPOINT: nowhere })),
      'network',
      /could not reach .*ECONNREFUSED.*no whole snapshot of tiny\/llama@main: check the connection/,
    );
  });

  test('a new commit on main fetches only the files that changed', async () => {
    const env = freshEnv();
    hub.commit('tiny/moving', backboneRepo());
    await pull(env, { repo: 'tiny/moving' });
    const cfg = JSON.parse(readFileSync(join(BACKBONE, 'config.json'), 'utf8')) as Record<string, unknown>;
    const second = hub.commit('tiny/moving', { ...backboneRepo(), 'config.json': JSON.stringify({ ...cfg, x: 1 }) });
    const r = await pull(env, { repo: 'tiny/moving' });
    assert.equal(r.commit, second);
    assert.deepEqual(
      r.files.filter((f) => f.from === 'network').map((f) => f.path),
      ['config.json'],
    );
    assert.equal(readFileSync(join(r.cacheDir, 'models--tiny--moving', 'refs', 'main'), 'utf8'), second);
    assert.equal(readdirSync(join(r.cacheDir, 'models--tiny--moving', 'snapshots')).length, 2);
  });
});

describe('an interrupted download', () => {
  test('keeps what arrived, says so, and the next pull fetches only the missing bytes with a Range', async () => {
    const env = freshEnv();
    const shard = hub.file('tiny/llama', SHARD);
    const size = shard.data.length;
    const cut = 16_384;
    hub.dropAfter('tiny/llama', SHARD, cut);
    const e = await refused(pull(env, { retries: 0 }), 'network', /connection .* model-00001-of-00002\.safetensors/);
    void e;
    const blob = join(env.HF_HOME, 'hub', 'models--tiny--llama', 'blobs', shard.sha256);
    assert.equal(statSync(`${blob}.incomplete`).size, cut, 'the bytes that arrived are kept');
    assert.ok(!existsSync(blob));
    const snapshot = join(env.HF_HOME, 'hub', 'models--tiny--llama', 'snapshots', llamaCommit);
    assert.ok(existsSync(join(snapshot, 'config.json')), 'files done before stay done');
    assert.ok(!existsSync(join(snapshot, SHARD)));
    assert.ok(
      !existsSync(join(env.HF_HOME, 'hub', 'models--tiny--llama', 'refs', 'main')),
      'no ref to a half snapshot',
    );

    const from = hub.requests.length;
    const r = await pull(env);
    const cdn = hub.since(from).filter((q) => q.server === 'cdn' && q.path.endsWith(shard.sha256));
    assert.deepEqual(
      cdn.map((q) => [q.range, q.status, q.bytes]),
      [[`bytes=${cut}-`, 206, size - cut]],
      'only the missing bytes',
    );
    const fetchedSmall = hub.since(from).filter((q) => q.path.endsWith('.json') && q.path.includes('/resolve/'));
    assert.deepEqual(fetchedSmall, [], 'the files already complete are not fetched again');
    assert.equal(r.files.find((f) => f.path === SHARD)!.from, 'resumed');
    assert.equal(r.fetchedBytes, size - cut + hub.file('tiny/llama', READ[6]).data.length);
    assert.deepEqual(readFileSync(join(r.snapshot, SHARD)), shard.data);
    assert.equal(
      createHash('sha256')
        .update(readFileSync(join(r.snapshot, SHARD)))
        .digest('hex'),
      shard.sha256,
    );
  });

  test('a dropped connection is continued within the same pull when retries are left', async () => {
    const env = freshEnv();
    hub.dropAfter('tiny/llama', SHARD, 10_000);
    const from = hub.requests.length;
    const r = await pull(env, { retries: 2 });
    const cdn = hub.since(from).filter((q) => q.path.endsWith(hub.file('tiny/llama', SHARD).sha256));
    assert.deepEqual(
      cdn.map((q) => q.range),
      [null, 'bytes=10000-'],
    );
    assert.equal(r.files.find((f) => f.path === SHARD)!.from, 'network');
    assert.equal(modelFingerprint(r.snapshot), modelFingerprint(LLAMA));
  });

  test('a Hub having trouble (503) is asked again, then named', async () => {
    hub.failNext('config.json', 503, 1);
    const r = await pull(freshEnv(), { repo: 'tiny/backbone' });
    assert.equal(r.files[0].path, 'config.json');
    hub.failNext('config.json', 503, 3);
    await refused(
      pull(freshEnv(), { repo: 'tiny/backbone' }),
      'network',
      /^http:\/\/127\.0\.0\.1:\d+ answered 503 for config\.json: the Hub is having trouble, try again later: its first 0 of 490 bytes are kept in the cache; 0 of 5 files are complete: start the same pull/,
    );
  });

  test('a file that does not match its sha256 is discarded, and the next pull starts it over', async () => {
    const env = freshEnv();
    hub.corruptBlob('tiny/backbone', 'model.safetensors');
    const sha = hub.file('tiny/backbone', 'model.safetensors').sha256;
    await refused(
      pull(env, { repo: 'tiny/backbone' }),
      'corrupt',
      new RegExp(`model\\.safetensors did not match the sha256 the Hub lists \\(${sha}, got [0-9a-f]{64}\\)`),
    );
    const blobs = join(env.HF_HOME, 'hub', 'models--tiny--backbone', 'blobs');
    assert.ok(!readdirSync(blobs).some((b) => b.startsWith(sha)), 'neither a blob nor an .incomplete is kept');
    // The next pull starts the file over and gets the right bytes.
    (hub as unknown as { corrupt: Set<string> }).corrupt.clear();
    const r = await pull(env, { repo: 'tiny/backbone' });
    assert.equal(modelFingerprint(r.snapshot), modelFingerprint(BACKBONE));
  });
});

describe('refusals say what to do', () => {
  test('an unknown repository, an unknown revision, a bad name', async () => {
    await refused(
      pull(freshEnv(), { repo: 'tiny/nope' }),
      'not-found',
      /no model tiny\/nope on http.*or it is private/,
    );
    await refused(
      pull(freshEnv({ HF_TOKEN: TOKEN }), { repo: 'tiny/nope' }),
      'not-found',
      /^there is no model tiny\/nope on http:\/\/127\.0\.0\.1:\d+: check the name$/,
    );
    await refused(pull(freshEnv(), { revision: 'v9' }), 'not-found', /tiny\/llama has no revision "v9"/);
    await refused(pull(freshEnv(), { repo: '../etc' }), 'bad-input', /not a model name/);
    await refused(pull(freshEnv(), { revision: '../../x' }), 'bad-input', /not a revision/);
  });

  test('a gated model: without a token, with a token without access, with a refused token', async () => {
    const licence = /accept its licence at https:\/\/huggingface\.co\/tiny\/gated/;
    const none = await refused(pull(freshEnv(), { repo: 'tiny/gated' }), 'unauthorized', licence);
    assert.match(none.message, /--token, HF_TOKEN or `huggingface-cli login`/);
    const denied = await refused(pull(freshEnv(), { repo: 'tiny/gated', token: OTHER_TOKEN }), 'forbidden', licence);
    assert.match(denied.message, /the token \(given\) has no access to tiny\/gated/);
    assert.ok(!denied.message.includes(OTHER_TOKEN));
    const bad = await refused(
      pull(freshEnv({ HF_TOKEN: 'hf_revoked' }), { repo: 'tiny/gated' }),
      'unauthorized',
      /refused the token \(from HF_TOKEN\) \(401\): it is mistyped, expired or revoked/,
    );
    assert.ok(!bad.message.includes('hf_revoked'));
    const r = await pull(freshEnv(), { repo: 'tiny/gated', token: TOKEN });
    assert.equal(r.tokenFrom, 'given');
  });

  test('a private model without access looks like a missing one, as the Hub makes it', async () => {
    await refused(pull(freshEnv(), { repo: 'tiny/private' }), 'not-found', /or it is private: .*give a token/);
    await refused(pull(freshEnv(), { repo: 'tiny/private', token: OTHER_TOKEN }), 'not-found', /check the name$/);
    const r = await pull(freshEnv({ HF_TOKEN: TOKEN }), { repo: 'tiny/private' });
    assert.equal(r.tokenFrom, 'HF_TOKEN');
  });

  test('no safetensors: pickles are refused and named; weights the engine does not read are named', async () => {
    const from = hub.requests.length;
    await refused(
      pull(freshEnv(), { repo: 'tiny/pickles' }),
      'unusable',
      /tiny\/pickles has no safetensors weights, only pytorch_model\.bin: pickles are refused \(loading one can run code\)/,
    );
    assert.ok(!hub.since(from).some((q) => q.path.endsWith('.bin')));
    await refused(
      pull(freshEnv(), { repo: 'tiny/consolidated' }),
      'unusable',
      /no model\.safetensors or model\.safetensors\.index\.json \(only consolidated\.safetensors/,
    );
  });

  test('a full disk is refused before the first byte, with the one disk-full message', async () => {
    process.env.DELTA_STUDIO_FREE_BYTES = '1000';
    try {
      const env = freshEnv();
      await pull(env).then(
        () => assert.fail('a full disk'),
        (e: Error) => {
          assert.equal(e.name, 'DiskFullError');
          assert.match(
            e.message,
            /^the disk of .*\/hub is full: 1\.0 KB free, downloading tiny\/llama needs about 93 KB \(7 files\); free space and pull it again \(what is downloaded is kept\)$/,
          );
        },
      );
    } finally {
      delete process.env.DELTA_STUDIO_FREE_BYTES;
    }
  });
});

describe('settings as the Hugging Face tools read them', () => {
  test('the cache folder and the token, in huggingface_hub order', () => {
    const home = join(tmp, 'settings-home');
    mkdirSync(home, { recursive: true });
    assert.equal(hubCacheDir({ HF_HOME: home }), join(home, 'hub'));
    assert.equal(hubCacheDir({ HF_HOME: home, HF_HUB_CACHE: '/c' }), '/c');
    assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/x' }), '/x/huggingface/hub');
    assert.equal(findToken(undefined, { HF_HOME: home }), null);
    writeFileSync(join(home, 'token'), `${TOKEN}\n`);
    assert.deepEqual(findToken(undefined, { HF_HOME: home }), { token: TOKEN, from: join(home, 'token') });
    assert.deepEqual(findToken(undefined, { HF_HOME: home, HF_TOKEN: 'hf_env' }), {
      token: 'hf_env',
      from: 'HF_TOKEN',
    });
    assert.deepEqual(findToken('hf_given', { HF_HOME: home, HF_TOKEN: 'hf_env' }), {
      token: 'hf_given',
      from: 'given',
    });
  });

  test('the token of `huggingface-cli login` goes to the Hub, never to the CDN', async () => {
    const env = freshEnv();
    mkdirSync(env.HF_HOME, { recursive: true });
    writeFileSync(join(env.HF_HOME, 'token'), TOKEN);
    const from = hub.requests.length;
    const r = await pull(env, { repo: 'tiny/gated' });
    assert.equal(r.tokenFrom, join(env.HF_HOME, 'token'));
    const asked = hub.since(from);
    assert.ok(asked.filter((q) => q.server === 'hub').every((q) => q.auth === `Bearer ${TOKEN}`));
    assert.ok(asked.some((q) => q.server === 'cdn'));
    assert.ok(
      asked.filter((q) => q.server === 'cdn').every((q) => q.auth === null),
      'no token to the CDN',
    );
  });
});

describe('through the application, the service and the CLI', () => {
  test('models.pull is a job with per-file progress; the model is recorded and read; the token is nowhere', async () => {
    const env = freshEnv();
    const ws = join(tmp, 'ws-service');
    const service = createService({
      stateDir: join(tmp, 'state'),
      workspace: ws,
      hub: { env, retryDelayMs: 5 },
    });
    const seen: { event: string; data: unknown }[] = [];
    for (const event of ['job.progress', 'job.done', 'pull.progress'] as const)
      service.events.on(event, (data) => seen.push({ event, data }));
    try {
      const { jobId } = await service.handlers['models.pull']({ repo: 'tiny/gated', revision: 'main', token: TOKEN });
      const done = await new Promise<Events['job.done']>((resolve) =>
        service.events.on('job.done', (d) => d.jobId === jobId && resolve(d)),
      );
      assert.equal(done.error, undefined, JSON.stringify(done.error));
      const result = done.result as import('../native/contract/index.js').ModelPulled;
      assert.equal(result.model.name, 'tiny/gated');
      assert.equal(result.model.path, result.snapshot);
      const files = seen.filter((e) => e.event === 'pull.progress').map((e) => e.data as Events['pull.progress']);
      assert.ok(files.length >= 3 && files.every((f) => f.jobId === jobId));
      assert.deepEqual(
        files.at(-1)!.files.map((f) => [f.path, f.state]),
        ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'model.safetensors'].map(
          (p) => [p, 'done'],
        ),
      );
      assert.ok(seen.some((e) => e.event === 'job.progress' && (e.data as { jobId: string }).jobId === jobId));
      const models = await service.handlers['models.list']({});
      assert.deepEqual(
        models.map((m) => m.name),
        ['tiny/gated'],
      );
      const tree = await service.handlers['models.tree']({ modelId: models[0].id });
      assert.equal(tree.tree.modelType, 'llama');
      // Again: found in the cache. Refusals come back as the job's error.
      const until = async (jobId: string): Promise<Events['job.done']> =>
        new Promise((resolve) => service.events.on('job.done', (d) => d.jobId === jobId && resolve(d)));
      const again = await service.handlers['models.pull']({ repo: 'tiny/gated', revision: 'main', token: TOKEN });
      assert.equal(((await until(again.jobId)).result as { fetchedBytes: number }).fetchedBytes, 0);
      const denied = await service.handlers['models.pull']({ repo: 'tiny/gated', revision: 'v2', token: OTHER_TOKEN });
      assert.equal((await until(denied.jobId)).error?.code, 'not-found');
      const missing = await service.handlers['models.pull']({
        repo: 'tiny/nope',
        revision: 'main',
        token: OTHER_TOKEN,
      });
      assert.equal((await until(missing.jobId)).error?.code, 'not-found');
    } finally {
      await service.close();
    }
    const everything = JSON.stringify(seen);
    assert.ok(!everything.includes(TOKEN) && !everything.includes(OTHER_TOKEN), 'no token in any event');
    assert.deepEqual(filesHolding(ws, TOKEN), [], 'no token in the workspace');
    assert.deepEqual(filesHolding(env.HF_HOME, TOKEN), [], 'no token in the cache');
    assert.deepEqual(filesHolding(join(tmp, 'state'), TOKEN), [], 'no token in the app state');
  });

  test('the contract checks the name, revision and token form without echoing the token', () => {
    const bad = (params: unknown): ContractError => {
      try {
        validateCall('models.pull', params);
      } catch (e) {
        return e as ContractError;
      }
      return assert.fail('expected bad-params');
    };
    assert.deepEqual(validateCall('models.pull', { repo: 'Qwen/Qwen2.5-0.5B-Instruct' }).params, {
      repo: 'Qwen/Qwen2.5-0.5B-Instruct',
      revision: 'main',
    });
    assert.equal(
      validateCall<'models.pull'>('models.pull', { repo: 'gpt2', revision: 'refs/pr/3' }).params.revision,
      'refs/pr/3',
    );
    for (const repo of ['../x', 'a/b/c', 'a--b/c', 'org/name.git', '-x/y', 'a b', ''])
      assert.equal(bad({ repo }).error.issues?.[0].path, 'repo', repo);
    for (const revision of ['..', '/main', 'a..b', 'main/', 'x y'])
      assert.equal(bad({ repo: 'a/b', revision }).error.issues?.[0].path, 'revision', revision);
    const secret = 'hf_secret with a space';
    const e = bad({ repo: 'a/b', token: secret });
    assert.equal(e.error.issues?.[0].path, 'token');
    assert.ok(!JSON.stringify(e.error).includes('secret'));
  });

  test('delta-studio models pull: progress, the snapshot path, --json, and no token printed', async () => {
    const env = freshEnv();
    const ws = join(tmp, 'ws-cli');
    const run = (args: string[], extra: Record<string, string> = {}) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        const p = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env, ...extra } });
        let out = '';
        let err = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.stderr.on('data', (d: Buffer) => (err += d.toString()));
        p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
      });
    const text = await run(['models', 'pull', 'tiny/gated', '--token', TOKEN, '--workspace', ws]);
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /tiny\/gated@main is commit [0-9a-f]{10}: 5 files/);
    assert.match(text.out, / {2}model\.safetensors {2}2\.4 MB {2}checked/);
    assert.match(text.out, /snapshot: .*\/hub\/models--tiny--gated\/snapshots\/[0-9a-f]{40}\n/);
    assert.match(text.out, /recorded as model 1 "tiny\/gated" \(llama, [\d,]+ parameters\)/);
    const json = await run(['models', 'pull', 'tiny/llama@main', '--workspace', ws, '--json'], { HF_TOKEN: TOKEN });
    assert.equal(json.code, 0, json.err);
    const r = JSON.parse(json.out.trim().split('\n').at(-1)!) as {
      snapshot: string;
      model: { id: number };
      tokenFrom: string;
    };
    assert.equal(r.model.id, 2);
    assert.equal(r.tokenFrom, 'HF_TOKEN');
    assert.ok(existsSync(join(r.snapshot, 'config.json')));
    const list = await run(['models', 'list', '--workspace', ws]);
    assert.match(list.out, /tiny\/gated .*\n.*tiny\/llama/);
    // In a cache without it: a token without access is refused at the first file.
    const refusedCli = await run(['models', 'pull', 'tiny/gated', '--token', OTHER_TOKEN, '--workspace', ws], {
      HF_HOME: join(tmp, 'home-cli-refused'),
    });
    assert.equal(refusedCli.code, 1);
    assert.match(refusedCli.err, /has no access to tiny\/gated/);
    for (const o of [text, json, list, refusedCli])
      assert.ok(![TOKEN, OTHER_TOKEN].some((t) => o.out.includes(t) || o.err.includes(t)), 'a token was printed');
    assert.deepEqual(filesHolding(ws, TOKEN), []);
    const badForm = await run(['models', 'pull', 'tiny/gated', '--token', 'hf_x y', '--workspace', ws]);
    assert.equal(badForm.code, 1);
    assert.match(badForm.err, /token: a token is one word of printable characters/);
    assert.ok(!badForm.err.includes('hf_x y'));
  });

  test('closing the app stops a pull under way; the next pull continues it', async () => {
    const env = freshEnv();
    const app = new Application({ workspace: join(tmp, 'ws-close'), hub: { env, retryDelayMs: 5 } });
    hub.trickle = { chunk: 8192, delayMs: 20 };
    try {
      const started = app.models.pull({ repo: 'tiny/backbone' }, () => {});
      const blob = join(
        env.HF_HOME,
        'hub',
        'models--tiny--backbone',
        'blobs',
        `${hub.file('tiny/backbone', 'model.safetensors').sha256}.incomplete`,
      );
      while (!existsSync(blob) || statSync(blob).size < 50_000) await new Promise((r) => setTimeout(r, 10));
      await app.close();
      await started.then(
        () => assert.fail('stopped'),
        (e: Error) => assert.match(e.message, /the download stopped as the app closed: pull again/),
      );
      const kept = statSync(blob).size;
      assert.ok(kept >= 50_000);
      hub.trickle = null;
      const r = await pull(env, { repo: 'tiny/backbone' });
      assert.equal(r.files.find((f) => f.path === 'model.safetensors')!.from, 'resumed');
    } finally {
      hub.trickle = null;
      await app.close();
    }
  });
});
