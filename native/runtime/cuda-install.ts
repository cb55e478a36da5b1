// GPU support in one step: what is there (NVIDIA driver, the CUDA provider of onnxruntime, whether it loads) and a
// verified download of the provider into the app's data folder.
//
// Where the provider goes, and how onnxruntime finds it: onnxruntime loads libonnxruntime_providers_{shared,cuda}
// from the folder of the core library it was loaded from (its "runtime path"), not from LD_LIBRARY_PATH, and
// onnxruntime-node loads its binding from a fixed path inside its package (dist/binding.js). So the files must end up
// next to libonnxruntime.so.1 in onnxruntime-node's bin folder. The download is kept in the data folder (the one
// place a packaged app can always write; it survives nothing but our own uninstall) and `activateCudaProvider`
// copies it into the bin folder when that is writable (a source checkout, a per-user Windows install, an unpacked
// Linux tarball). A deb in /opt or an AppImage is read-only: see build/README.md "CUDA".
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import {
  accessSync,
  constants,
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { extractTarGz } from '../files/tar.js';
import { extractZip } from '../files/zip.js';
import { isInside } from '../files/paths.js';
import { findCudaLibraries, type CudaLibraries } from './cuda-libs.js';
import { cudaStatus, ortBinFolder, type CudaStatus } from './providers.js';
import type { GpuStatus } from '../contract/types.js';
import { residentSupport } from './resident.js';

export type { GpuStatus } from '../contract/types.js';

/** One downloadable build of the provider: where it is, how to check it, and where the libraries sit inside it. */
export interface ProviderSource {
  url: string;
  /** Hex sha256 of the archive; null when not pinned (the install then refuses to run). */
  sha256: string | null;
  /** Optional registry integrity ("sha512-<base64>"), checked as well when given. */
  integrity?: string;
  /** 'tgz': a gzipped tar (an npm tarball); 'zip': a zip (a NuGet .nupkg). */
  format: 'tgz' | 'zip';
  /** Our file name → its path inside the archive. */
  files: Record<string, string>;
}

/**
 * The pinned provider (default): onnxruntime **1.29.0**'s Linux x64 CUDA provider built for **CUDA 13**, as published
 * on the npm registry in the Unity package `com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9` (an npm tarball).
 * Why this one:
 * - pinned and verifiable: the tarball's sha256 below was computed from a download checked against the registry's own
 *   `dist.integrity` (sha512, also kept here and checked) and `dist.shasum`;
 * - reachable: it comes from registry.npmjs.org, which every user who could `npm install` us can reach (NuGet's
 *   sha256 could not be obtained when this was written, so that source could never be pinned);
 * - same onnxruntime version as our core (onnxruntime-node 1.29.0; provider and core must match): the libraries
 *   report 1.29.0, and /work/shared/GPU.md records that this pairing runs.
 * What the machine needs: an NVIDIA driver for CUDA 13 (≥ 580), and on the library path the CUDA 13 runtime
 * (libcudart.so.13), cuBLAS 13 (libcublas/libcublasLt.so.13), cuRAND (libcurand.so.10) and cuDNN 9 (libcudnn.so.9).
 * Layout (`tar tzf`): package/Plugins/Linux/x64/libonnxruntime_providers_{cuda,shared,tensorrt}.so (+ Unity .meta
 * files, README, LICENSE — MIT, Microsoft — which are not extracted). About 180 MB to download, 230 MB unpacked.
 */
export const CUDA_PROVIDER = {
  ortVersion: '1.29.0',
  cuda: '13',
  platform: 'linux-x64',
  package: 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9',
  url: 'https://registry.npmjs.org/com.github.asus4.onnxruntime.linux-x64-gpu/-/com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz',
  sha256: '2b459e0c17f340c92970c10ed86de4f37a3009f93c14053e6ad4334cbb6be412' as string | null,
  integrity: 'sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w==',
  format: 'tgz' as ProviderSource['format'],
  sizeMB: 180,
  files: {
    'libonnxruntime_providers_cuda.so': 'package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so',
    'libonnxruntime_providers_shared.so': 'package/Plugins/Linux/x64/libonnxruntime_providers_shared.so',
    'libonnxruntime_providers_tensorrt.so': 'package/Plugins/Linux/x64/libonnxruntime_providers_tensorrt.so',
  } as Record<string, string>,
};

/**
 * The documented alternative: the NuGet package onnxruntime-node's own install script fetches
 * (script/install-metadata.js: Microsoft.ML.OnnxRuntime.Gpu.Linux, same version as the core; CUDA 12, cuDNN 9).
 * Its sha256 could not be determined offline, so installing from it refuses until someone pins it from a trusted
 * download (`sha256sum microsoft.ml.onnxruntime.gpu.linux.1.29.0.nupkg`). For machines with CUDA 12 and no CUDA 13.
 */
export const CUDA_PROVIDER_NUGET = {
  ortVersion: '1.29.0',
  cuda: '12',
  platform: 'linux-x64',
  package: 'Microsoft.ML.OnnxRuntime.Gpu.Linux@1.29.0',
  url: 'https://api.nuget.org/v3-flatcontainer/microsoft.ml.onnxruntime.gpu.linux/1.29.0/microsoft.ml.onnxruntime.gpu.linux.1.29.0.nupkg',
  sha256: null as string | null, // unknown: pin from a trusted download before use
  format: 'zip' as ProviderSource['format'],
  sizeMB: 300,
  files: {
    'libonnxruntime_providers_cuda.so': 'runtimes/linux-x64/native/libonnxruntime_providers_cuda.so',
    'libonnxruntime_providers_shared.so': 'runtimes/linux-x64/native/libonnxruntime_providers_shared.so',
    'libonnxruntime_providers_tensorrt.so': 'runtimes/linux-x64/native/libonnxruntime_providers_tensorrt.so',
  } as Record<string, string>,
};

/** The NVIDIA driver each CUDA major version needs (Linux). */
const MIN_DRIVER: Record<string, string> = { '12': '525', '13': '580' };

const libName = (p: string): string =>
  process.platform === 'win32' ? `onnxruntime_providers_${p}.dll` : `libonnxruntime_providers_${p}.so`;

/** The provider's folder inside the app data folder. */
export function providerDir(dataDir: string): string {
  return join(dataDir, 'onnxruntime-cuda', `${CUDA_PROVIDER.ortVersion}-${process.platform}-${process.arch}`);
}

function nvidiaSmi(timeoutMs: number): Promise<{ name: string; driver: string } | { error: string }> {
  return new Promise((res) => {
    execFile(
      'nvidia-smi',
      ['--query-gpu=name,driver_version', '--format=csv,noheader'],
      { timeout: timeoutMs, windowsHide: true },
      (err, stdout) => {
        if (err)
          return res({
            error:
              (err as NodeJS.ErrnoException).code === 'ENOENT'
                ? 'nvidia-smi is not installed'
                : `nvidia-smi failed: ${err.message.split('\n')[0]}`,
          });
        const [name, driver] = stdout
          .split('\n')[0]
          .split(',')
          .map((s) => s.trim());
        res(name ? { name, driver: driver ?? '' } : { error: 'nvidia-smi listed no GPU' });
      },
    );
  });
}

async function detectNvidia(timeoutMs: number): Promise<GpuStatus['nvidia']> {
  let driver: string | undefined;
  if (process.platform === 'linux' && existsSync('/proc/driver/nvidia/version')) {
    driver = /Kernel Module\s+([\d.]+)/.exec(readFileSync('/proc/driver/nvidia/version', 'utf8'))?.[1];
  }
  const smi = await nvidiaSmi(timeoutMs);
  if ('name' in smi) return { present: true, name: smi.name, driver: smi.driver || driver };
  if (driver) return { present: true, driver, reason: smi.error };
  const where = process.platform === 'linux' ? '/proc/driver/nvidia/version is missing and ' : '';
  return { present: false, reason: `no NVIDIA GPU or driver found: ${where}${smi.error}` };
}

/** NVIDIA GPU? provider files? loadable (a real CUDA session, via providers.ts)? and what to do next. */
export async function gpuStatus(
  opts: {
    dataDir?: string;
    timeoutMs?: number;
    probe?: () => Promise<CudaStatus>;
    libraries?: () => CudaLibraries;
  } = {},
): Promise<GpuStatus> {
  const nvidia = await detectNvidia(opts.timeoutMs ?? 3000);
  // Looked for afresh: the panel is where a user checks again after installing a missing library.
  const libraries = (opts.libraries ?? (() => findCudaLibraries({ fresh: true })))();
  const libs = librariesAdvice(libraries);
  const binFolder = ortBinFolder();
  const has = (dir: string): boolean =>
    existsSync(join(dir, libName('cuda'))) && existsSync(join(dir, libName('shared')));
  const dataFolder = opts.dataDir ? providerDir(opts.dataDir) : undefined;
  const inBinFolder = has(binFolder);
  const inDataFolder = !!dataFolder && has(dataFolder);
  const supported = process.platform === 'linux' && process.arch === 'x64';
  const install = {
    supported,
    url: CUDA_PROVIDER.url,
    pinned: !!CUDA_PROVIDER.sha256,
    cuda: CUDA_PROVIDER.cuda,
    ortVersion: CUDA_PROVIDER.ortVersion,
    reason: supported
      ? undefined
      : `the one-step install covers Linux x64 only (this is ${process.platform}-${process.arch})`,
  };
  let loadable = false;
  let reason: string | undefined;
  if (inBinFolder) {
    const st = await (opts.probe ?? cudaStatus)();
    loadable = st.usable;
    reason = st.reason;
  } else
    reason = inDataFolder
      ? `the CUDA provider is downloaded (${dataFolder}) but not yet next to onnxruntime (${binFolder})`
      : `the CUDA provider of onnxruntime ${CUDA_PROVIDER.ortVersion} is not installed`;
  if (!nvidia.present) reason = `${nvidia.reason}; ${reason ?? 'the CUDA provider is installed'}`;
  const cuda = CUDA_PROVIDER.cuda;
  const advice = loadable
    ? `CUDA is ready${nvidia.name ? ` on ${nvidia.name}` : ''}.`
    : !nvidia.present
      ? `No NVIDIA GPU was found: training runs on the CPU. With an NVIDIA GPU, install its driver (≥ ${MIN_DRIVER[cuda] ?? '?'} for CUDA ${cuda}) and check again.`
      : !inBinFolder && !inDataFolder
        ? supported
          ? `Install the CUDA provider (one download, about ${CUDA_PROVIDER.sizeMB} MB).${libs ? ` ${libs}` : ''}`
          : install.reason!
        : !inBinFolder
          ? `Activate the downloaded provider: copy it next to onnxruntime (${binFolder}).${libs ? ` ${libs}` : ''}`
          : `The CUDA provider is installed but does not load: ${reason}.${libs ? ` ${libs}` : ` The CUDA ${cuda} libraries were all found; see the reason above.`}`;
  return {
    nvidia,
    provider: { installed: inBinFolder || inDataFolder, binFolder, dataFolder, inBinFolder, inDataFolder },
    loadable,
    reason: loadable ? undefined : reason,
    advice,
    install,
    libraries,
    deviceState: deviceState(),
  };
}

function deviceState(): GpuStatus['deviceState'] {
  const r = residentSupport();
  return r.available ? { available: true } : { available: false, reason: r.reason };
}

/**
 * What to do about missing CUDA libraries, in one sentence per fix ('' when none is missing). Found ones need nothing:
 * the app puts them on the trainer's library path and preloads them where it runs CUDA itself.
 */
export function librariesAdvice(libs: CudaLibraries): string {
  if (!libs.supported || !libs.missing.length) return '';
  const missing = libs.libraries.filter((l) => !l.found);
  const pip = [...new Set(missing.map((l) => l.pip))];
  return (
    `The provider also needs ${missing.map((l) => `${l.label} (${l.soname})`).join(', ')}, not found on this machine: ` +
    `pip install ${pip.join(' ')} into any Python environment (a virtualenv, conda or the user site), or install ` +
    `the CUDA ${CUDA_PROVIDER.cuda} toolkit and cuDNN 9; they are found there without setting LD_LIBRARY_PATH.`
  );
}

export interface InstallProgress {
  phase: 'download' | 'verify' | 'extract' | 'done';
  bytes: number;
  total?: number;
  fraction: number;
}

/**
 * Downloads the pinned provider archive (default CUDA_PROVIDER, an npm tarball), checks its sha256 (and its registry
 * sha512 integrity when the source has one), extracts it with the reader its format needs (tar.gz or zip; both refuse
 * absolute names, "..", links and duplicates), and lays the provider files out in `providerDir(dataDir)` atomically
 * (temp folder, then rename): on any failure nothing is left behind.
 */
export async function installCudaProvider(opts: {
  dataDir: string;
  onProgress?: (p: InstallProgress) => void;
  signal?: AbortSignal;
  source?: ProviderSource;
}): Promise<{ dir: string; files: string[]; sha256: string }> {
  const src = opts.source ?? CUDA_PROVIDER;
  if (!src.sha256)
    throw new Error(
      `the sha256 of ${src.url} is not pinned in this build (native/runtime/cuda-install.ts): refusing to install an unverified download (from a source checkout, onnxruntime-node's own script: npm run cuda:install)`,
    );
  if (!/^[0-9a-f]{64}$/i.test(src.sha256))
    throw new Error(`the pinned sha256 of ${src.url} is not 64 hex digits: ${src.sha256}`);
  const integrity = src.integrity ? /^sha512-([A-Za-z0-9+/]+={0,2})$/.exec(src.integrity)?.[1] : undefined;
  if (src.integrity && !integrity)
    throw new Error(`unsupported integrity "${src.integrity}" for ${src.url} (only sha512-<base64>)`);
  const progress = opts.onProgress ?? (() => {});
  const root = join(opts.dataDir, 'onnxruntime-cuda');
  mkdirSync(root, { recursive: true });
  const tag = `${process.pid}.${randomBytes(4).toString('hex')}`;
  const archive = join(root, `.download.${tag}.tmp`);
  const unpacked = join(root, `.unpacked.${tag}.tmp`);
  const staged = join(root, `.staged.${tag}.tmp`);
  const dest = providerDir(opts.dataDir);
  try {
    const res = await fetch(src.url, { signal: opts.signal, redirect: 'follow' });
    if (!res.ok || !res.body) throw new Error(`download of ${src.url} failed: HTTP ${res.status}`);
    const total = Number(res.headers.get('content-length')) || undefined;
    const hash = createHash('sha256');
    const hash512 = integrity ? createHash('sha512') : undefined;
    const out = createWriteStream(archive);
    let bytes = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      hash512?.update(chunk);
      bytes += chunk.length;
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      progress({ phase: 'download', bytes, total, fraction: total ? 0.9 * (bytes / total) : 0 });
    }
    await new Promise<void>((res2, rej) => out.end((e?: Error | null) => (e ? rej(e) : res2())));
    progress({ phase: 'verify', bytes, total, fraction: 0.9 });
    const sha256 = hash.digest('hex');
    if (sha256 !== src.sha256.toLowerCase())
      throw new Error(
        `the download of ${src.url} does not match its pinned sha256 (got ${sha256}, expected ${src.sha256}): nothing was installed`,
      );
    if (hash512 && hash512.digest('base64') !== integrity)
      throw new Error(
        `the download of ${src.url} does not match its pinned integrity ${src.integrity}: nothing was installed`,
      );
    progress({ phase: 'extract', bytes, total, fraction: 0.92 });
    if (src.format === 'tgz') {
      // Streamed; only the mapped files are written, but every entry is checked (absolute, "..", links, duplicates).
      const wanted = new Set(Object.values(src.files));
      let last = 0.92;
      await extractTarGz(archive, unpacked, {
        only: (name) => wanted.has(name),
        onProgress: (done, size) => {
          const f = 0.92 + 0.06 * (done / size);
          if (f - last >= 0.005) progress({ phase: 'extract', bytes, total, fraction: (last = f) });
        },
      });
    } else {
      // extractZip refuses absolute names, "..", symlinks and duplicates before writing anything.
      await extractZip(archive, unpacked);
    }
    mkdirSync(staged);
    const files: string[] = [];
    for (const [name, inPkg] of Object.entries(src.files)) {
      const from = join(unpacked, ...inPkg.split('/'));
      if (basename(name) !== name || !isInside(unpacked, from))
        throw new Error(`bad provider file mapping ${name} → ${inPkg}`);
      if (!existsSync(from)) throw new Error(`${inPkg} is missing from the downloaded package`);
      renameSync(from, join(staged, name)); // same folder tree: a rename, not a 230 MB copy
      files.push(name);
    }
    mkdirSync(dirname(dest), { recursive: true });
    // Replace an earlier install atomically too: move it aside, rename the new one in, then drop the old.
    const old = existsSync(dest) ? `${dest}.old.${tag}` : undefined;
    if (old) renameSync(dest, old);
    renameSync(staged, dest);
    if (old) rmSync(old, { recursive: true, force: true });
    progress({ phase: 'done', bytes, total, fraction: 1 });
    return { dir: dest, files, sha256 };
  } finally {
    for (const p of [archive, unpacked, staged]) rmSync(p, { recursive: true, force: true });
  }
}

/** Copies the downloaded provider next to onnxruntime's core library (each file via a temp name and a rename; the
 *  CUDA library last, since its presence is what says "installed"). */
export function activateCudaProvider(
  dataDir: string,
  binFolder = ortBinFolder(),
): { activated: boolean; reason?: string } {
  const from = providerDir(dataDir);
  if (!existsSync(join(from, libName('cuda'))))
    return { activated: false, reason: `no downloaded provider in ${from}` };
  try {
    accessSync(binFolder, constants.W_OK);
  } catch {
    return {
      activated: false,
      reason: `${binFolder} is read-only (a system or AppImage install): see build/README.md "CUDA"`,
    };
  }
  for (const f of [libName('shared'), libName('tensorrt'), libName('cuda')]) {
    if (!existsSync(join(from, f))) continue; // tensorrt is optional
    const tmp = join(binFolder, `.${f}.${process.pid}.tmp`);
    copyFileSync(join(from, f), tmp);
    renameSync(tmp, join(binFolder, f));
  }
  return { activated: true };
}
