import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { extractZip, readZip, readZipEntry, writeZip, type ZipEntryInput } from '../native/files/zip.js';
import { exportBundle } from '../native/export/bundle.js';
import { parseDeltaConfig } from '../native/delta/index.js';
import { writePlugin } from '../native/plugins/format.js';

function withTmp(fn: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ds-zip-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

// The independent checkers: Info-ZIP's unzip and/or Python's zipfile. At least one must exist (this machine has both).
const UNZIP = '/usr/bin/unzip';
const PYTHON = '/usr/bin/python3';
const tools = [UNZIP, PYTHON].filter((t) => existsSync(t));

/** Validates `file` with every system tool present (CRC and sizes of every entry); returns the names they list. */
function systemCheck(file: string): string[][] {
  assert.ok(tools.length > 0, `neither ${UNZIP} nor ${PYTHON} exists: nothing independent can validate our zips`);
  const lists: string[][] = [];
  if (existsSync(UNZIP)) {
    const out = execFileSync(UNZIP, ['-tq', file], { encoding: 'utf8' }); // throws on a non-zero exit
    assert.match(out, /No errors detected/);
    lists.push(
      execFileSync(UNZIP, ['-Z1', file], { encoding: 'utf8', maxBuffer: 64 << 20 })
        .split('\n')
        .filter(Boolean),
    );
  }
  if (existsSync(PYTHON)) {
    const script =
      'import json, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nbad = z.testzip()\nassert bad is None, bad\nprint(json.dumps(z.namelist()))';
    lists.push(
      JSON.parse(execFileSync(PYTHON, ['-c', script, file], { encoding: 'utf8', maxBuffer: 64 << 20 })) as string[],
    );
  }
  return lists;
}

/** A stored-only zip laid out by hand, for archives our writer refuses to make. */
function rawZip(file: string, entries: { name: string; data: Buffer; mode?: number }[]): void {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const crc = crc32(e.data);
    const l = Buffer.alloc(30);
    l.writeUInt32LE(0x04034b50, 0);
    l.writeUInt16LE(20, 4);
    l.writeUInt16LE(0x0800, 6);
    l.writeUInt32LE(crc, 14);
    l.writeUInt32LE(e.data.length, 18);
    l.writeUInt32LE(e.data.length, 22);
    l.writeUInt16LE(name.length, 26);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE((3 << 8) | 20, 4);
    c.writeUInt16LE(20, 6);
    c.writeUInt16LE(0x0800, 8);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(e.data.length, 20);
    c.writeUInt32LE(e.data.length, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt32LE(((e.mode ?? 0o100644) << 16) >>> 0, 38);
    c.writeUInt32LE(offset, 42);
    locals.push(l, name, e.data);
    centrals.push(c, name);
    offset += 30 + name.length + e.data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  writeFileSync(file, Buffer.concat([...locals, cd, end]));
}

/** Incompressible but reproducible bytes (xorshift32). */
function noise(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const FIXED = new Date('2024-05-06T07:08:10Z');

function sampleEntries(dir: string): { entries: ZipEntryInput[]; expect: Map<string, Buffer> } {
  const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(500));
  // Over the 4 MiB piece size, so multi-piece CRC and the sync-flushed deflate pieces are exercised.
  const big = Buffer.concat([noise(1 << 20, 1), Buffer.alloc(4 << 20, 7), noise(123, 2)]);
  writeFileSync(join(dir, 'big.bin'), big);
  writeFileSync(join(dir, 'empty-on-disk'), '');
  const expect = new Map<string, Buffer>([
    ['deflated.txt', text],
    ['stored.txt', text],
    ['données/élève ✓ 日本.txt', Buffer.from('unicode name')],
    ['empty.txt', Buffer.alloc(0)],
    ['sub/empty-on-disk', Buffer.alloc(0)],
    ['sub/big-deflated.bin', big],
    ['sub/big-stored.bin', big],
    ['lazy.json', Buffer.from('{"lazy":true}')],
  ]);
  const entries: ZipEntryInput[] = [
    { name: 'deflated.txt', data: text },
    { name: 'stored.txt', data: text, compress: false },
    { name: 'données/élève ✓ 日本.txt', data: Buffer.from('unicode name') },
    { name: 'empty.txt', data: new Uint8Array(0) },
    { name: 'sub/empty-on-disk', data: { file: join(dir, 'empty-on-disk') } },
    { name: 'sub/big-deflated.bin', data: { file: join(dir, 'big.bin') } },
    { name: 'sub/big-stored.bin', data: { file: join(dir, 'big.bin') }, compress: false },
    { name: 'lazy.json', data: () => Buffer.from('{"lazy":true}') },
  ];
  return { entries, expect };
}

for (const forceZip64 of [false, true]) {
  test(
    `zip round trip${forceZip64 ? ' with forced ZIP64 records' : ''}: stored, deflated, UTF-8, empty; read back by us and the system`,
    withTmp(async (dir) => {
      const { entries, expect } = sampleEntries(dir);
      const file = join(dir, 'a.zip');
      writeZip(file, entries, { mtime: FIXED, forceZip64 });
      const list = readZip(file);
      assert.deepEqual(
        list.map((e) => e.name),
        [...expect.keys()],
      );
      for (const e of list) {
        const want = expect.get(e.name)!;
        assert.equal(e.size, want.length, e.name);
        assert.equal(e.crc32, crc32(want), e.name);
        assert.equal(e.zip64, forceZip64, e.name);
        assert.equal(e.mtime.toISOString(), FIXED.toISOString());
        assert.equal(
          e.method,
          e.name.includes('stored') || want.length === 0 ? 0 : 8,
          `${e.name}: stored when asked, or empty`,
        );
        assert.ok(readZipEntry(file, e.name).equals(want), e.name);
      }
      assert.ok(list.find((e) => e.name === 'deflated.txt')!.compressedSize < 200, 'repetitive text deflates');
      const bytes = readFileSync(file);
      const end64 = Buffer.from([0x50, 0x4b, 0x06, 0x06]);
      assert.equal(bytes.includes(end64), forceZip64, 'ZIP64 end record present exactly when forced');
      if (forceZip64)
        assert.equal(bytes.readUInt16LE(bytes.length - 22 + 10), 0xffff, 'the classic end record defers to ZIP64');
      for (const names of systemCheck(file)) assert.deepEqual(names, [...expect.keys()]);

      const out = join(dir, 'out');
      await extractZip(file, out);
      for (const [name, want] of expect) assert.ok(readFileSync(join(out, ...name.split('/'))).equals(want), name);
      assert.deepEqual(
        readdirSync(dir).filter((n) => n.endsWith('.tmp')),
        [],
        'no temp files left',
      );
      // Same entries and mtime: same bytes.
      writeZip(join(dir, 'b.zip'), sampleEntries(dir).entries, { mtime: FIXED, forceZip64 });
      assert.ok(readFileSync(join(dir, 'b.zip')).equals(bytes), 'byte-identical');
    }),
  );
}

test(
  'an archive with no entries, and one with 65,536 entries (ZIP64 by count)',
  withTmp(async (dir) => {
    const empty = join(dir, 'empty.zip');
    writeZip(empty, []);
    assert.equal(readFileSync(empty).length, 22);
    assert.deepEqual(readZip(empty), []);
    await extractZip(empty, join(dir, 'empty-out'));
    assert.deepEqual(readdirSync(join(dir, 'empty-out')), []);

    const many = join(dir, 'many.zip');
    const n = 65536;
    writeZip(
      many,
      Array.from({ length: n }, (_, i) => ({
        name: `d${i % 16}/${i}.txt`,
        data: Buffer.from(String(i)),
        compress: i % 2 === 0,
      })),
      { mtime: FIXED },
    );
    const list = readZip(many);
    assert.equal(list.length, n);
    assert.equal(list[n - 1].name, `d${(n - 1) % 16}/${n - 1}.txt`);
    assert.ok(
      readFileSync(many).includes(Buffer.from([0x50, 0x4b, 0x06, 0x06])),
      'over 65,535 entries needs the ZIP64 end record',
    );
    assert.equal(readZipEntry(many, 'd15/65535.txt').toString(), '65535');
    for (const names of systemCheck(many)) assert.equal(names.length, n);
  }),
);

test(
  'writeZip refuses unsafe or duplicate names and leaves nothing behind',
  withTmp((dir) => {
    const file = join(dir, 'x.zip');
    const bad: [string, RegExp][] = [
      ['/etc/passwd', /absolute/],
      ['../evil.txt', /"\.\."/],
      ['a/../../b', /"\.\."/],
      ['a\\b.txt', /backslash/],
      ['', /empty/],
      ['C:/x.txt', /drive letter/],
      ['c:x', /drive letter/],
      ['a//b', /empty or "\."/],
      ['./a', /empty or "\."/],
      ['dir/', /trailing/],
    ];
    for (const [name, why] of bad) {
      assert.throws(
        () =>
          writeZip(file, [
            { name: 'ok.txt', data: Buffer.from('x') },
            { name, data: Buffer.from('x') },
          ]),
        (e: Error) => e.name === 'ZipError' && why.test(e.message) && e.message.includes(`"${name}"`),
        name,
      );
    }
    assert.throws(
      () =>
        writeZip(file, [
          { name: 'a', data: Buffer.from('1') },
          { name: 'a', data: Buffer.from('2') },
        ]),
      /entry "a": refused: two entries/,
    );
    assert.throws(() => writeZip(file, [{ name: 'a', data: { file: join(dir, 'missing') } }]), /ENOENT/);
    assert.deepEqual(readdirSync(dir), [], 'no archive and no temp file');
  }),
);

test(
  'extractZip refuses "..", absolute, backslash and symlink entries before writing anything',
  withTmp(async (dir) => {
    const dest = join(dir, 'box', 'dest');
    mkdirSync(join(dir, 'box'));
    const cases: [string, { name: string; data: Buffer; mode?: number }[], RegExp][] = [
      [
        'dotdot',
        [
          { name: 'fine.txt', data: Buffer.from('ok') },
          { name: '../evil.txt', data: Buffer.from('pwned') },
        ],
        /entry "\.\.\/evil\.txt": refused: .*"\.\."/,
      ],
      [
        'nested',
        [{ name: 'a/../../evil.txt', data: Buffer.from('pwned') }],
        /entry "a\/\.\.\/\.\.\/evil\.txt": refused/,
      ],
      ['absolute', [{ name: '/tmp/evil.txt', data: Buffer.from('pwned') }], /absolute/],
      ['backslash', [{ name: '..\\evil.txt', data: Buffer.from('pwned') }], /backslash/],
      ['drive', [{ name: 'C:/evil.txt', data: Buffer.from('pwned') }], /drive letter/],
      [
        'symlink',
        [{ name: 'link', data: Buffer.from('/etc/passwd'), mode: 0o120777 }],
        /entry "link": refused: it is a symbolic link/,
      ],
      [
        'duplicate',
        [
          { name: 'a.txt', data: Buffer.from('1') },
          { name: 'a.txt', data: Buffer.from('2') },
        ],
        /two entries/,
      ],
    ];
    for (const [label, entries, why] of cases) {
      const file = join(dir, `${label}.zip`);
      rawZip(file, entries);
      await assert.rejects(
        extractZip(file, dest),
        (e: Error) => e.name === 'ZipError' && why.test(e.message) && e.message.includes(file),
        label,
      );
      assert.ok(!existsSync(dest), `${label}: destination not created`);
      assert.deepEqual(readdirSync(join(dir, 'box')), [], `${label}: no temp folder left`);
      assert.ok(
        !existsSync(join(dir, 'evil.txt')) && !existsSync(join(dir, 'box', 'evil.txt')),
        `${label}: nothing written outside`,
      );
    }
    // The raw writer itself is sound: the same layout with a safe name extracts.
    rawZip(join(dir, 'good.zip'), [{ name: 'fine.txt', data: Buffer.from('ok') }]);
    await extractZip(join(dir, 'good.zip'), dest);
    assert.equal(readFileSync(join(dest, 'fine.txt'), 'utf8'), 'ok');
    await assert.rejects(extractZip(join(dir, 'good.zip'), dest), /exists and is not an empty folder/);
  }),
);

test(
  'a corrupted byte, a lying size and a truncated archive are detected',
  withTmp(async (dir) => {
    const file = join(dir, 'c.zip');
    const payload = Buffer.from('important bytes that must arrive intact');
    writeZip(file, [
      { name: 'keep.txt', data: Buffer.from('fine') },
      { name: 'data.bin', data: payload, compress: false },
      { name: 'z.txt', data: payload },
    ]);
    const e = readZip(file).find((x) => x.name === 'data.bin')!;
    const bytes = readFileSync(file);
    const at = e.offset + 30 + Buffer.byteLength(e.name);
    assert.deepEqual(bytes.subarray(at, at + payload.length), payload);
    bytes[at + 5] ^= 0x20;
    const bad = join(dir, 'bad.zip');
    writeFileSync(bad, bytes);
    const dest = join(dir, 'out');
    await assert.rejects(
      extractZip(bad, dest),
      (err: Error) => /entry "data\.bin": CRC-32 mismatch/.test(err.message) && err.message.startsWith(bad),
    );
    assert.throws(() => readZipEntry(bad, 'data.bin'), /entry "data\.bin": CRC-32 mismatch/);
    assert.ok(!existsSync(dest));
    assert.deepEqual(readdirSync(dir).sort(), ['bad.zip', 'c.zip']);

    // A central record that declares fewer bytes than the data unpacks to (a zip bomb's trick) stops early.
    const z = readZip(file).find((x) => x.name === 'z.txt')!;
    const lying = readFileSync(file);
    const cdAt = lying.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    assert.equal(lying.readUInt32LE(cdAt + 24), z.size);
    lying.writeUInt32LE(10, cdAt + 24);
    writeFileSync(bad, lying);
    await assert.rejects(extractZip(bad, dest), /entry "z\.txt": holds more than the 10 bytes/);
    assert.ok(!existsSync(dest));

    writeFileSync(bad, readFileSync(file).subarray(0, 60));
    assert.throws(() => readZip(bad), /bad\.zip: not a zip archive, or truncated/);
  }),
);

function makePlugin(dir: string, methods: unknown = [{ method: 'lora', r: 2, alpha: 4 }]): string {
  const file = join(dir, 'sentiment.delta');
  const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.1);
  writePlugin(
    file,
    {
      methods: parseDeltaConfig(methods),
      task: 'classification',
      labels: ['negative', 'positive'],
      base: { fingerprint: 'ab'.repeat(32), modelType: 'llama', name: 'tiny-llama' },
      plugin: 'sentiment',
      version: 3,
      runId: 'run-42',
      metrics: { accuracy: 0.9375, macro_f1: 0.93 },
      createdAt: '2025-02-03T04:05:06.000Z',
    },
    {
      'model.layers.0.self_attn.q_proj.lora_A': { dtype: 'float32', shape: [2, 8], data: rnd(16) },
      'model.layers.0.self_attn.q_proj.lora_B': { dtype: 'float32', shape: [8, 2], data: rnd(16) },
      'score.weight': { dtype: 'float32', shape: [2, 8], data: rnd(16) },
    },
  );
  return file;
}

test(
  'bundle: plugin, model card, config and metadata; byte-identical when made twice',
  withTmp((dir) => {
    const plugin = makePlugin(dir);
    const info = {
      run: {
        id: 'run-42',
        config: { method: 'lora', r: 2, alpha: 4, lr: 0.001, epochs: 3 },
        metrics: { eval_loss: 0.21 },
        dataset: { name: 'reviews', digest: 'cd'.repeat(32), rows: { train: 800, test: 160 }, source: 'reviews.csv' },
      },
      baseModel: { path: '/models/tiny llama', name: 'tiny-llama' },
    };
    const a = join(dir, 'out', 'a.zip');
    const r = exportBundle(plugin, a, info);
    assert.deepEqual(r.entries, ['sentiment-v3.delta', 'README.md', 'config.json', 'plugin.json']);
    assert.equal(r.trainableParameters, 48);
    assert.deepEqual(
      readZip(a).map((e) => [e.name, e.method]),
      [
        ['sentiment-v3.delta', 0],
        ['README.md', 8],
        ['config.json', 8],
        ['plugin.json', 8],
      ],
    );
    assert.deepEqual(
      readZipEntry(a, 'sentiment-v3.delta'),
      readFileSync(plugin),
      'the plugin inside is the original, byte for byte',
    );

    const card = readZipEntry(a, 'README.md').toString('utf8');
    for (const want of [
      'LoRA',
      '`r` = `2`',
      '`alpha` = `4`',
      'ab'.repeat(32),
      'tiny-llama',
      '| accuracy | 0.9375 |',
      '| eval_loss | 0.21 |',
      '**48**',
      '`negative`, `positive`',
      'cd'.repeat(32),
      'train: 800 rows',
      'delta-studio plugins import sentiment-v3.delta',
      "--model '/models/tiny llama'",
      '--format peft',
      'PeftModel.from_pretrained',
      'num_labels=2',
      r.pluginSha256,
    ]) {
      assert.ok(card.includes(want), `README mentions ${want}`);
    }
    assert.deepEqual(JSON.parse(readZipEntry(a, 'config.json').toString()), info.run.config);
    const meta = JSON.parse(readZipEntry(a, 'plugin.json').toString()) as Record<string, unknown>;
    assert.equal(meta.task, 'classification');
    assert.deepEqual(meta.methods, parseDeltaConfig([{ method: 'lora', r: 2, alpha: 4 }]));
    assert.equal(meta.trainableParameters, 48);
    assert.equal((meta.file as { sha256: string }).sha256, r.pluginSha256);
    for (const names of systemCheck(a)) assert.deepEqual(names, r.entries);

    const b = join(dir, 'b.zip');
    exportBundle(plugin, b, info);
    assert.deepEqual(readFileSync(b), readFileSync(a), 'deterministic');
    assert.throws(() => exportBundle(plugin, b, info), /b\.zip already exists/);
    exportBundle(plugin, b, { ...info, overwrite: true });
    assert.deepEqual(readFileSync(b), readFileSync(a));
    assert.equal(readZip(a)[0].mtime.toISOString(), '2025-02-03T04:05:06.000Z');

    // A damaged plugin is not bundled.
    const bytes = readFileSync(plugin);
    bytes[bytes.length - 3] ^= 1;
    writeFileSync(plugin, bytes);
    assert.throws(() => exportBundle(plugin, join(dir, 'c.zip')), /tensor bytes have sha256.*will not be bundled/);
    assert.ok(!existsSync(join(dir, 'c.zip')));
  }),
);

test(
  'bundle of a method without a PEFT form says so, and defaults config.json to the delta config',
  withTmp((dir) => {
    const plugin = makePlugin(dir, [{ method: 'bitfit' }]);
    const out = join(dir, 'bitfit.zip');
    exportBundle(plugin, out);
    const card = readZipEntry(out, 'README.md').toString('utf8');
    assert.match(card, /BitFit has no PEFT equivalent/);
    assert.doesNotMatch(card, /PeftModel/);
    assert.match(card, /--model tiny-llama/);
    assert.deepEqual(JSON.parse(readZipEntry(out, 'config.json').toString()), {
      deltas: parseDeltaConfig([{ method: 'bitfit' }]),
    });
  }),
);
