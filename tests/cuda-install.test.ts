// The tar reader (native/files/tar.ts) and the CUDA provider install against a local HTTP server serving small fake
// packages (an npm-style .tgz, and the NuGet-style zip alternative); gpuStatus on this machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { extractTarGz, listTar, TarError } from '../native/files/tar.js';
import { writeZip } from '../native/files/zip.js';
import {
  CUDA_PROVIDER,
  CUDA_PROVIDER_NUGET,
  gpuStatus,
  installCudaProvider,
  librariesAdvice,
  providerDir,
  type InstallProgress,
  type ProviderSource,
} from '../native/runtime/cuda-install.js';

// --- a tiny tar writer, so tests can build exactly the archives they need (long names, links, bad names) ----------

interface TarIn {
  name: string;
  data?: Buffer;
  /** typeflag: '0' file (default), '5' folder, '2' symlink, '1' hardlink, 'L' GNU long name, 'x' pax header. */
  type?: string;
  linkname?: string;
  mode?: number;
  /** ustar prefix field. */
  prefix?: string;
}

function octal(n: number, len: number): string {
  return `${n.toString(8).padStart(len - 1, '0')}\0`;
}

function tarHeader(e: TarIn, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(e.name, 0, 100, 'utf8');
  h.write(octal(e.mode ?? 0o644, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(size, 12), 124, 'latin1');
  h.write(octal(1_700_000_000, 12), 136, 'latin1');
  h.write(e.type ?? '0', 156, 'latin1');
  if (e.linkname) h.write(e.linkname, 157, 100, 'utf8');
  h.write('ustar\x0000', 257, 'latin1');
  if (e.prefix) h.write(e.prefix, 345, 155, 'utf8');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

function tar(entries: TarIn[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    parts.push(tarHeader(e, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const tgz = (entries: TarIn[]): Buffer => gzipSync(tar(entries));

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'tar-'));
}

function put(dir: string, bytes: Buffer, name = 'a.tgz'): string {
  const f = join(dir, name);
  writeFileSync(f, bytes);
  return f;
}

// --- the tar reader -----------------------------------------------------------------------------------------------

const hasTar = existsSync('/usr/bin/tar') || existsSync('/bin/tar');

for (const format of ['gnu', 'pax', 'ustar'] as const) {
  test(
    `tar reader: round trip of a \`tar czf --format=${format}\` archive (long names, empty and executable files)`,
    { skip: hasTar ? false : 'no tar on this machine' },
    async () => {
      const dir = tmp();
      const src = join(dir, 'src');
      // 130 characters: beyond the 100-byte name field (ustar puts the folders in its prefix field).
      const deep = `${'d'.repeat(60)}/${'e'.repeat(40)}`;
      const longFile = `${deep}/${'f'.repeat(28)}.bin`;
      const files: Record<string, Buffer> = {
        'package/README.md': Buffer.from('hello'),
        'package/empty.txt': Buffer.alloc(0),
        'package/bin/run.so': randomBytes(70_000),
        [`package/${longFile}`]: randomBytes(1000),
      };
      for (const [n, d] of Object.entries(files)) {
        mkdirSync(join(src, ...n.split('/').slice(0, -1)), { recursive: true });
        writeFileSync(join(src, ...n.split('/')), d);
      }
      chmodSync(join(src, 'package/bin/run.so'), 0o755);
      const archive = join(dir, 'a.tgz');
      execFileSync('tar', ['czf', archive, `--format=${format}`, '-C', src, 'package']);
      const names = (await listTar(archive))
        .filter((e) => e.type === 'file')
        .map((e) => e.name)
        .sort();
      assert.deepEqual(names, Object.keys(files).sort());
      const out = join(dir, 'out');
      const r = await extractTarGz(archive, out);
      assert.equal(r.dir, out);
      for (const [n, d] of Object.entries(files)) assert.deepEqual(readFileSync(join(out, ...n.split('/'))), d, n);
      assert.equal(statSync(join(out, 'package/bin/run.so')).mode & 0o777, 0o755);
      assert.equal(statSync(join(out, 'package/README.md')).mode & 0o777, 0o644);
      assert.deepEqual(readdirSync(dir).sort(), ['a.tgz', 'out', 'src'], 'no temp folder left');
    },
  );
}

test('tar reader: GNU long names, pax paths, a ustar prefix, "./" names, plain (not gzipped) tar, and `only`', async () => {
  const dir = tmp();
  const long1 = `${'x'.repeat(150)}/one.txt`;
  const long2 = `${'y'.repeat(120)}/${'z'.repeat(90)}/two.txt`;
  const entries: TarIn[] = [
    { name: './', type: '5' },
    { name: './LongLink', type: 'L', data: Buffer.from(`${long1}\0`) },
    { name: 'truncated-name', data: Buffer.from('one') },
    {
      name: 'PaxHeaders/two',
      type: 'x',
      data: Buffer.from(paxRecord('path', long2) + paxRecord('mtime', '1700000000.5')),
    },
    { name: 'ignored', data: Buffer.from('two') },
    { name: 'three.txt', prefix: 'pre/fix', data: Buffer.from('three') },
    { name: './dir/', type: '5' },
    { name: './dir/four.txt', data: Buffer.from('four') },
  ];
  const names = (await listTar(put(dir, tgz(entries)))).map((e) => e.name);
  assert.deepEqual(names, ['./', long1, long2, 'pre/fix/three.txt', './dir/', './dir/four.txt']);
  const out = join(dir, 'out');
  await extractTarGz(put(dir, tar(entries), 'plain.tar'), out);
  assert.equal(readFileSync(join(out, long1), 'utf8'), 'one');
  assert.equal(readFileSync(join(out, long2), 'utf8'), 'two');
  assert.equal(readFileSync(join(out, 'pre/fix/three.txt'), 'utf8'), 'three');
  assert.equal(readFileSync(join(out, 'dir/four.txt'), 'utf8'), 'four');
  const only = join(dir, 'only');
  const r = await extractTarGz(put(dir, tgz(entries)), only, { only: (n) => n === 'dir/four.txt' });
  assert.deepEqual(
    r.entries.map((e) => e.name),
    ['dir/four.txt'],
  );
  assert.deepEqual(readdirSync(only), ['dir']);
});

const refusals: { what: string; entries: TarIn[]; entry: string; why: RegExp }[] = [
  {
    what: '".."',
    entries: [{ name: 'package/../../evil.so', data: Buffer.from('evil') }],
    entry: 'package/../../evil.so',
    why: /refused: .*"\.\."/,
  },
  {
    what: 'an absolute path',
    entries: [{ name: '/tmp/evil.so', data: Buffer.from('evil') }],
    entry: '/tmp/evil.so',
    why: /refused: .*absolute/,
  },
  {
    what: 'a backslash',
    entries: [{ name: 'package\\..\\evil.so', data: Buffer.from('evil') }],
    entry: 'package\\..\\evil.so',
    why: /refused: .*backslash/,
  },
  {
    what: 'a symlink',
    entries: [{ name: 'package/link.so', type: '2', linkname: '/etc/passwd' }],
    entry: 'package/link.so',
    why: /refused: it is a symbolic link/,
  },
  {
    what: 'a hardlink',
    entries: [{ name: 'package/hard.so', type: '1', linkname: 'package/ok.txt' }],
    entry: 'package/hard.so',
    why: /refused: it is a hard link/,
  },
  {
    what: 'a device file',
    entries: [{ name: 'package/dev', type: '3' }],
    entry: 'package/dev',
    why: /refused: entry type '3'/,
  },
  {
    what: 'a duplicate',
    entries: [{ name: 'package/ok.txt', data: Buffer.from('again') }],
    entry: 'package/ok.txt',
    why: /two entries/,
  },
  {
    what: 'a pax path with ".."',
    entries: [
      { name: 'h', type: 'x', data: Buffer.from(paxRecord('path', '../pax-evil')) },
      { name: 'innocent', data: Buffer.from('x') },
    ],
    entry: '../pax-evil',
    why: /refused: .*"\.\."/,
  },
];

for (const c of refusals) {
  test(`tar reader: ${c.what} is refused naming the entry, and nothing is left behind`, async () => {
    const dir = tmp();
    // A good entry first, so something was already written when the bad one comes.
    const archive = put(
      dir,
      tgz([
        { name: 'package/ok.txt', data: Buffer.from('ok') },
        ...c.entries,
        { name: 'package/after.txt', data: Buffer.from('after') },
      ]),
    );
    const out = join(dir, 'x', 'out');
    mkdirSync(join(dir, 'x'));
    for (const only of [undefined, (n: string) => n === 'package/after.txt']) {
      const err = await extractTarGz(archive, out, { only }).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof TarError, `rejected with a TarError (only: ${!!only})`);
      assert.equal(err.entry, c.entry);
      assert.ok(err.message.includes(`entry "${c.entry}"`), err.message);
      assert.match(err.message, c.why);
      assert.deepEqual(readdirSync(join(dir, 'x')), [], 'no temp folder, no destination');
    }
    assert.equal(existsSync(join(dir, 'evil.so')), false);
    assert.equal(existsSync(join(tmpdir(), 'evil.so')), false);
  });
}

test('tar reader: a corrupt header checksum is detected and nothing is left', async () => {
  const dir = tmp();
  const raw = tar([
    { name: 'package/a.txt', data: Buffer.from('a') },
    { name: 'package/b.txt', data: Buffer.from('b') },
  ]);
  raw[1024 + 8] ^= 0x01; // second header's name, checksum unchanged
  const out = join(dir, 'x', 'out');
  mkdirSync(join(dir, 'x'));
  await assert.rejects(
    extractTarGz(put(dir, gzipSync(raw)), out),
    (e: unknown) => e instanceof TarError && /bad header checksum at offset 1024/.test(e.message),
  );
  assert.deepEqual(readdirSync(join(dir, 'x')), []);
  await assert.rejects(listTar(put(dir, gzipSync(raw), 'b.tgz')), /bad header checksum/);
  // Not a tar at all.
  await assert.rejects(listTar(put(dir, gzipSync(randomBytes(2048)), 'c.tgz')), /bad header checksum at offset 0/);
});

test('tar reader: truncated gzip or tar data is an error and leaves nothing', async () => {
  const dir = tmp();
  const gz = tgz([{ name: 'package/big.bin', data: randomBytes(100_000) }]);
  mkdirSync(join(dir, 'x'));
  await assert.rejects(
    extractTarGz(put(dir, gz.subarray(0, gz.length - 2000)), join(dir, 'x', 'out')),
    (e: unknown) => e instanceof TarError && /gzip|truncated/.test(e.message),
  );
  assert.deepEqual(readdirSync(join(dir, 'x')), []);
  const raw = tar([{ name: 'package/big.bin', data: randomBytes(100_000) }]);
  await assert.rejects(
    extractTarGz(put(dir, raw.subarray(0, 50_000), 'p.tar'), join(dir, 'x', 'out')),
    /entry "package\/big.bin": truncated/,
  );
  assert.deepEqual(readdirSync(join(dir, 'x')), []);
  // A destination that is a non-empty folder is refused before anything is read.
  mkdirSync(join(dir, 'x', 'full'));
  writeFileSync(join(dir, 'x', 'full', 'f'), '');
  await assert.rejects(
    extractTarGz(put(dir, tgz([{ name: 'a', data: Buffer.from('a') }]), 'ok.tgz'), join(dir, 'x', 'full')),
    /not an empty folder/,
  );
});

// --- the install --------------------------------------------------------------------------------------------------

const TGZ_FILES = CUDA_PROVIDER.files;
const ZIP_FILES = CUDA_PROVIDER_NUGET.files;

/** An npm-style tarball with the layout of com.github.asus4.onnxruntime.linux-x64-gpu (Unity .meta files and all). */
function makeTgz(extra: TarIn[] = []): Buffer {
  const p = 'package/Plugins/Linux/x64';
  return tgz([
    { name: 'package/package.json', data: Buffer.from('{"name":"fake"}') },
    { name: 'package/Plugins/Linux/x64.meta', data: Buffer.from('meta') },
    { name: `${p}/libonnxruntime_providers_cuda.so`, data: randomBytes(200_000), mode: 0o755 },
    { name: `${p}/libonnxruntime_providers_cuda.so.meta`, data: Buffer.from('meta') },
    { name: `${p}/libonnxruntime_providers_shared.so`, data: Buffer.from('shared'), mode: 0o755 },
    { name: `${p}/libonnxruntime_providers_tensorrt.so`, data: Buffer.from('tensorrt'), mode: 0o755 },
    ...extra,
  ]);
}

function makeZip(dir: string): Buffer {
  const file = join(dir, `pkg-${Math.random().toString(36).slice(2)}.zip`);
  writeZip(file, [
    ...Object.values(ZIP_FILES).map((name) => ({
      name,
      data: name.includes('cuda') ? randomBytes(100_000) : Buffer.from(name),
      compress: false,
    })),
    { name: 'Microsoft.ML.OnnxRuntime.Gpu.Linux.nuspec', data: Buffer.from('<package/>') },
  ]);
  return readFileSync(file);
}

async function serve(body: Buffer): Promise<{ url: string; close: () => void }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
    // In pieces, so progress has several steps.
    let off = 0;
    const next = (): void => {
      if (off >= body.length) {
        res.end();
        return;
      }
      res.write(body.subarray(off, off + 32_768), () => setTimeout(next, 2));
      off += 32_768;
    };
    next();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/pkg.tgz`, close: () => server.close() };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const sri = (b: Buffer): string => `sha512-${createHash('sha512').update(b).digest('base64')}`;

test('the pinned default is the npm tarball: sha256 and sha512 integrity pinned, tgz, same onnxruntime as the core', () => {
  assert.match(CUDA_PROVIDER.sha256!, /^[0-9a-f]{64}$/);
  assert.match(CUDA_PROVIDER.integrity, /^sha512-[A-Za-z0-9+/]{86}==$/);
  assert.equal(CUDA_PROVIDER.format, 'tgz');
  assert.equal(CUDA_PROVIDER.cuda, '13');
  assert.match(CUDA_PROVIDER.url, /^https:\/\/registry\.npmjs\.org\/.*\.tgz$/);
  const core = JSON.parse(readFileSync(join('node_modules', 'onnxruntime-node', 'package.json'), 'utf8')) as {
    version: string;
  };
  assert.equal(CUDA_PROVIDER.ortVersion, core.version);
  for (const [name, inPkg] of Object.entries(CUDA_PROVIDER.files))
    assert.ok(inPkg.startsWith('package/') && inPkg.endsWith(`/${name}`), inPkg);
  assert.equal(CUDA_PROVIDER_NUGET.sha256, null, 'the NuGet alternative stays unpinned (it refuses)');
  assert.equal(CUDA_PROVIDER_NUGET.format, 'zip');
});

test('installs the tgz: progress, sha256 and integrity checked, files laid out in the data folder, nothing else left', async () => {
  const dir = tmp();
  const pkg = makeTgz();
  const s = await serve(pkg);
  try {
    const dataDir = join(dir, 'data');
    const events: InstallProgress[] = [];
    const source: ProviderSource = {
      url: s.url,
      sha256: sha(pkg),
      integrity: sri(pkg),
      format: 'tgz',
      files: TGZ_FILES,
    };
    const r = await installCudaProvider({ dataDir, source, onProgress: (p) => events.push(p) });
    assert.equal(r.dir, providerDir(dataDir));
    assert.equal(r.sha256, sha(pkg));
    assert.deepEqual(readdirSync(r.dir).sort(), Object.keys(TGZ_FILES).sort());
    assert.equal(readFileSync(join(r.dir, 'libonnxruntime_providers_shared.so'), 'utf8'), 'shared');
    assert.equal(statSync(join(r.dir, 'libonnxruntime_providers_cuda.so')).size, 200_000);
    assert.equal(statSync(join(r.dir, 'libonnxruntime_providers_cuda.so')).mode & 0o777, 0o755);
    assert.ok(events.filter((e) => e.phase === 'download').length > 2, 'several download events');
    assert.deepEqual([...new Set(events.map((e) => e.phase))], ['download', 'verify', 'extract', 'done']);
    const fr = events.map((e) => e.fraction);
    assert.deepEqual(
      fr,
      [...fr].sort((a, b) => a - b),
      'fractions only grow',
    );
    assert.equal(events.at(-1)!.fraction, 1);
    assert.deepEqual(
      readdirSync(join(dataDir, 'onnxruntime-cuda')),
      [readdirSync(join(dataDir, 'onnxruntime-cuda'))[0]],
      'no temp files left',
    );
    // Again: replaces the earlier install.
    await installCudaProvider({ dataDir, source });
    assert.equal(readdirSync(join(dataDir, 'onnxruntime-cuda')).length, 1);
    assert.deepEqual(readdirSync(r.dir).sort(), Object.keys(TGZ_FILES).sort());
  } finally {
    s.close();
  }
});

test('a sha256 or integrity mismatch is refused and leaves nothing (an earlier install stays)', async () => {
  const dir = tmp();
  const pkg = makeTgz();
  const s = await serve(pkg);
  try {
    const dataDir = join(dir, 'data');
    await assert.rejects(
      installCudaProvider({ dataDir, source: { url: s.url, sha256: '0'.repeat(64), format: 'tgz', files: TGZ_FILES } }),
      /does not match its pinned sha256/,
    );
    assert.deepEqual(readdirSync(join(dataDir, 'onnxruntime-cuda')), []);
    assert.equal(existsSync(providerDir(dataDir)), false);
    await installCudaProvider({ dataDir, source: { url: s.url, sha256: sha(pkg), format: 'tgz', files: TGZ_FILES } });
    await assert.rejects(
      installCudaProvider({
        dataDir,
        source: { url: s.url, sha256: sha(pkg), integrity: sri(Buffer.from('other')), format: 'tgz', files: TGZ_FILES },
      }),
      /does not match its pinned integrity/,
    );
    assert.equal(readdirSync(join(dataDir, 'onnxruntime-cuda')).length, 1, 'only the earlier install');
    assert.deepEqual(readdirSync(providerDir(dataDir)).sort(), Object.keys(TGZ_FILES).sort());
  } finally {
    s.close();
  }
});

test('a tgz with an entry that climbs out, or a symlink, is refused and leaves nothing', async () => {
  for (const bad of [
    { name: 'package/../../evil.so', data: Buffer.from('evil') },
    { name: 'package/Plugins/Linux/x64/evil.so', type: '2', linkname: '/etc/passwd' },
  ]) {
    const dir = tmp();
    const pkg = makeTgz([bad]);
    const s = await serve(pkg);
    try {
      const dataDir = join(dir, 'data');
      await assert.rejects(
        installCudaProvider({ dataDir, source: { url: s.url, sha256: sha(pkg), format: 'tgz', files: TGZ_FILES } }),
        new RegExp(`entry "${bad.name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}": refused`),
      );
      assert.deepEqual(readdirSync(join(dataDir, 'onnxruntime-cuda')), []);
      assert.equal(existsSync(join(dir, 'evil.so')), false);
    } finally {
      s.close();
    }
  }
});

test('a tgz without a mapped file is refused and leaves nothing', async () => {
  const dir = tmp();
  const pkg = tgz([{ name: 'package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so', data: Buffer.from('cuda') }]);
  const s = await serve(pkg);
  try {
    const dataDir = join(dir, 'data');
    await assert.rejects(
      installCudaProvider({ dataDir, source: { url: s.url, sha256: sha(pkg), format: 'tgz', files: TGZ_FILES } }),
      /libonnxruntime_providers_shared.so is missing/,
    );
    assert.deepEqual(readdirSync(join(dataDir, 'onnxruntime-cuda')), []);
  } finally {
    s.close();
  }
});

test('the zip format (the NuGet alternative) still installs when pinned', async () => {
  const dir = tmp();
  const pkg = makeZip(dir);
  const s = await serve(pkg);
  try {
    const dataDir = join(dir, 'data');
    const r = await installCudaProvider({
      dataDir,
      source: { url: s.url, sha256: sha(pkg), format: 'zip', files: ZIP_FILES },
    });
    assert.deepEqual(readdirSync(r.dir).sort(), Object.keys(ZIP_FILES).sort());
    assert.equal(readdirSync(join(dataDir, 'onnxruntime-cuda')).length, 1);
  } finally {
    s.close();
  }
});

test('without a pinned sha256 (the NuGet alternative as shipped) the install refuses to run', async () => {
  const dir = tmp();
  await assert.rejects(
    installCudaProvider({ dataDir: dir, source: { ...CUDA_PROVIDER_NUGET, url: 'http://127.0.0.1:1/x' } }),
    /not pinned/,
  );
  await assert.rejects(
    installCudaProvider({
      dataDir: dir,
      source: { url: 'http://127.0.0.1:1/x', sha256: 'abc', format: 'tgz', files: TGZ_FILES },
    }),
    /not 64 hex digits/,
  );
  assert.deepEqual(readdirSync(dir), []);
});

test(
  'gpuStatus on this machine: no NVIDIA GPU, with a reason and advice',
  { skip: existsSync('/proc/driver/nvidia/version') ? 'this machine has an NVIDIA driver' : false },
  async () => {
    const st = await gpuStatus({ dataDir: tmp(), timeoutMs: 2000 });
    assert.equal(st.nvidia.present, false);
    assert.match(st.nvidia.reason!, /no NVIDIA GPU/);
    assert.equal(st.loadable, false);
    assert.match(st.reason!, /no NVIDIA GPU/);
    assert.match(st.advice, /No NVIDIA GPU.*CUDA 13/);
    assert.equal(st.install.ortVersion, '1.29.0');
    assert.equal(st.install.pinned, true);
    assert.equal(st.install.cuda, '13');
    assert.deepEqual(
      st.libraries.libraries.map((l) => l.soname),
      ['libcudart.so.13', 'libcublasLt.so.13', 'libcublas.so.13', 'libcurand.so.10', 'libcudnn.so.9'],
    );
  },
);

test('advice for missing CUDA libraries names each and what installs it, once; none when all are found', async () => {
  const { findCudaLibraries } = await import('../native/runtime/cuda-libs.js');
  const root = tmp();
  const libs = findCudaLibraries({ root, home: root, env: {}, ldconfig: '', fresh: true });
  assert.equal(libs.missing.length, 5);
  const advice = librariesAdvice(libs);
  assert.match(advice, /CUDA 13 runtime \(libcudart\.so\.13\), cuBLASLt 13 .* cuDNN 9 \(libcudnn\.so\.9\)/);
  assert.match(
    advice,
    /pip install 'nvidia-cuda-runtime>=13,<14' 'nvidia-cublas>=13,<14' 'nvidia-curand>=10\.4,<11' nvidia-cudnn-cu13 /,
  );
  assert.equal(librariesAdvice({ ...libs, missing: [], libraries: [] }), '');
  // Reported by gpuStatus, whatever the GPU.
  const st = await gpuStatus({ dataDir: tmp(), timeoutMs: 2000, libraries: () => libs });
  assert.equal(st.libraries, libs);
});
