// The CUDA libraries onnxruntime's CUDA provider needs, found where users have them, and made used.
//
// What the provider needs (onnxruntime 1.29.0 for CUDA 13, `readelf -d libonnxruntime_providers_cuda.so`): NEEDED
// libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10 (and libcuda.so.1, the driver's own); it
// dlopens libcudnn.so.9, which dlopens its sub-libraries (libcudnn_graph.so.9, …) by soname in turn. All are resolved
// by the dynamic loader: LD_LIBRARY_PATH, the linker cache (ldconfig), the default folders — which is why a CUDA
// toolkit in /usr/local/cuda-13.0 that was never added to ld.so.conf, or the nvidia-* wheels of a Python environment,
// are invisible to it. We look where users have them (bounded: named folders and one level of globbing, no walk):
// LD_LIBRARY_PATH, the linker cache, active conda/virtual environments, CUDA toolkits, conda installations and their
// environments, Python environments (virtualenvs, pyenv, user site, /opt/*/.venv), system site-packages.
//
// Made used in two ways. A process about to be started gets LD_LIBRARY_PATH with the folders prepended
// (`cudaProcessEnv`), which the loader reads at start. A process already running cannot change its own search path
// (glibc reads LD_LIBRARY_PATH once, at start), so `preloadCudaLibraries` loads each library by absolute path first:
// the loader then resolves the provider's NEEDED sonames, and cuDNN's dlopen by soname, to the objects already loaded
// (glibc matches a requested name against the DT_SONAME of every loaded object). tests/cuda-libs.test.ts checks both
// with small libraries built by gcc.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import os from 'node:os';
import { basename, delimiter, dirname, join } from 'node:path';
import type { CudaLibraries, CudaLibraryName, CudaLibraryStatus, FoundLibrary } from '../contract/types.js';

export type { CudaLibraries, CudaLibraryName, CudaLibraryStatus, FoundLibrary } from '../contract/types.js';

/** In load order: each library's dependencies come before it (cuBLAS needs cuBLASLt). */
export const CUDA_LIBRARIES: readonly { name: CudaLibraryName; label: string; soname: string; pip: string }[] = [
  { name: 'cudart', label: 'CUDA 13 runtime', soname: 'libcudart.so.13', pip: "'nvidia-cuda-runtime>=13,<14'" },
  { name: 'cublasLt', label: 'cuBLASLt 13', soname: 'libcublasLt.so.13', pip: "'nvidia-cublas>=13,<14'" },
  { name: 'cublas', label: 'cuBLAS 13', soname: 'libcublas.so.13', pip: "'nvidia-cublas>=13,<14'" },
  { name: 'curand', label: 'cuRAND 10', soname: 'libcurand.so.10', pip: "'nvidia-curand>=10.4,<11'" },
  { name: 'cudnn', label: 'cuDNN 9', soname: 'libcudnn.so.9', pip: 'nvidia-cudnn-cu13' },
];

/** cuDNN 9's sub-libraries, which libcudnn.so.9 dlopens by soname: loaded before it, dependencies first. */
const CUDNN_PARTS = [
  'libcudnn_graph.so.9',
  'libcudnn_ops.so.9',
  'libcudnn_cnn.so.9',
  'libcudnn_adv.so.9',
  'libcudnn_heuristic.so.9',
  'libcudnn_engines_runtime_compiled.so.9',
  'libcudnn_engines_precompiled.so.9',
];

/** How the folder came to be searched. The loader itself already looks in 'LD_LIBRARY_PATH' and 'system' ones. */
export type FoundVia = FoundLibrary['via'];

export interface FindOptions {
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** Prefix of the machine's own folders (/usr, /opt, /lib): tests point it at a fake layout. */
  root?: string;
  /** `ldconfig -p` output; run when absent (its own root is the machine's, so tests pass it). */
  ldconfig?: string;
  /** Scan again instead of returning the result cached for the same inputs. */
  fresh?: boolean;
}

interface Place {
  folder: string;
  via: FoundVia;
  where: string;
}

function subfolders(dir: string, keep: (name: string) => boolean = () => true): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => (e.isDirectory() || e.isSymbolicLink()) && keep(e.name))
      .map((e) => join(dir, e.name))
      .sort();
  } catch {
    return [];
  }
}

/** Newest version first: cuda-13.1 before cuda-13.0, python3.12 before python3.9. */
const byVersionDesc = (a: string, b: string): number =>
  basename(b).localeCompare(basename(a), undefined, { numeric: true });

/** Where a Python environment keeps its packages. */
function sitePackages(envRoot: string): string[] {
  const out: string[] = [];
  for (const lib of ['lib', 'lib64'])
    for (const py of subfolders(join(envRoot, lib), (n) => /^python3(\.\d+)?$/.test(n)).sort(byVersionDesc))
      for (const sp of ['site-packages', 'dist-packages']) if (existsSync(join(py, sp))) out.push(join(py, sp));
  return out;
}

/** The lib folders of NVIDIA's wheels: nvidia/cu13/lib (CUDA 13's combined layout) and nvidia/<part>/lib. */
function wheelFolders(site: string): string[] {
  const nvidia = join(site, 'nvidia');
  const parts = subfolders(nvidia);
  const first = parts.filter((p) => basename(p) === 'cu13');
  return [...first, ...parts.filter((p) => basename(p) !== 'cu13')].map((p) => join(p, 'lib'));
}

function ldconfigOutput(): string {
  for (const bin of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      return execFileSync(bin, ['-p'], { encoding: 'utf8', timeout: 3000, stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      // next
    }
  }
  return '';
}

/** soname → path from `ldconfig -p` ("libcudart.so.13 (libc6,x86-64) => /usr/lib/…/libcudart.so.13"). */
function parseLdconfig(text: string): Map<string, string> {
  const arch = os.arch() === 'arm64' ? 'AArch64' : 'x86-64';
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const hit = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$/.exec(line);
    if (hit && hit[2].includes(arch) && !m.has(hit[1])) m.set(hit[1], hit[3]);
  }
  return m;
}

/** The folders to look in, in the order we trust them. */
function places(opts: FindOptions, ldcache: Map<string, string>): Place[] {
  const env = opts.env ?? process.env;
  const home = opts.home ?? os.homedir();
  const sys = (p: string): string => (opts.root ? join(opts.root, p) : p);
  const out: Place[] = [];
  const add = (folder: string, via: FoundVia, where: string): void => {
    if (folder && !out.some((p) => p.folder === folder)) out.push({ folder, via, where });
  };
  const pythonEnv = (root: string, what: string): void => {
    for (const site of sitePackages(root))
      for (const f of wheelFolders(site)) add(f, 'python', `pip wheel in ${what} ${root}`);
  };
  const condaEnv = (root: string, what: string): void => {
    add(join(root, 'lib'), 'conda', `${what} ${root}`);
    pythonEnv(root, what);
  };

  for (const f of (env.LD_LIBRARY_PATH ?? '').split(delimiter)) if (f) add(f, 'LD_LIBRARY_PATH', 'LD_LIBRARY_PATH');
  for (const path of ldcache.values()) add(dirname(path), 'system', 'the linker cache (ldconfig)');

  // What the user has active comes before what merely exists.
  if (env.CONDA_PREFIX) condaEnv(env.CONDA_PREFIX, 'the active conda environment');
  if (env.VIRTUAL_ENV) pythonEnv(env.VIRTUAL_ENV, 'the active virtual environment');

  const toolkits = [
    ...[env.CUDA_HOME, env.CUDA_PATH, env.CUDA_ROOT].filter((p): p is string => !!p),
    sys('/usr/local/cuda'),
    ...subfolders(sys('/usr/local'), (n) => /^cuda-\d/.test(n)).sort(byVersionDesc),
    sys('/opt/cuda'),
    ...subfolders(sys('/opt/nvidia'), (n) => /^cuda/.test(n)).sort(byVersionDesc),
  ];
  const targets = os.arch() === 'arm64' ? ['sbsa-linux', 'aarch64-linux'] : ['x86_64-linux'];
  for (const tk of toolkits)
    for (const lib of ['lib64', ...targets.map((t) => `targets/${t}/lib`), 'lib'])
      if (existsSync(join(tk, lib))) add(join(tk, lib), 'toolkit', `CUDA toolkit ${tk}`);

  // Conda, mamba, miniforge installations: the base and every environment.
  const condaRoots = [
    env.MAMBA_ROOT_PREFIX,
    ...['miniforge3', 'mambaforge', 'miniconda3', 'anaconda3', 'micromamba', '.conda'].map((n) => join(home, n)),
    ...['/opt/conda', '/opt/miniforge3', '/opt/miniconda3', '/opt/anaconda3'].map(sys),
  ].filter((p): p is string => !!p && existsSync(p));
  for (const root of condaRoots) {
    condaEnv(root, 'conda installation');
    for (const e of subfolders(join(root, 'envs'))) condaEnv(e, 'conda environment');
  }

  // Python environments: the user site, virtualenvs at the usual places (one level deep), pyenv, system Pythons.
  pythonEnv(join(home, '.local'), 'the user site of');
  const venvs = [
    ...['.venv', 'venv', '.env'].map((n) => join(home, n)),
    ...subfolders(join(home, '.virtualenvs')),
    ...subfolders(home, (n) => !n.startsWith('.')).flatMap((d) => [join(d, '.venv'), join(d, 'venv')]),
    ...subfolders(sys('/opt')).flatMap((d) => [join(d, '.venv'), join(d, 'venv'), d]),
    ...subfolders(join(home, '.pyenv', 'versions')).sort(byVersionDesc),
  ].filter((p) => existsSync(join(p, 'lib')));
  for (const v of venvs) pythonEnv(v, 'the Python environment');
  for (const p of ['/usr/local', '/usr']) pythonEnv(sys(p), 'the system Python of');

  for (const p of ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/local/lib'])
    if (existsSync(sys(p))) add(sys(p), 'system', sys(p));
  return out;
}

function versionOf(path: string, soname: string): string {
  let real = basename(path);
  try {
    real = basename(realpathSync(path));
  } catch {
    // a dangling link: keep the name
  }
  if (real.startsWith(`${soname}.`)) return soname.slice(soname.indexOf('.so.') + 4) + real.slice(soname.length);
  // No version behind the link (wheels ship the soname as the file): the newest versioned sibling, if any.
  const siblings = (() => {
    try {
      return readdirSync(dirname(path)).filter((n) => n.startsWith(`${soname}.`));
    } catch {
      return [];
    }
  })().sort(byVersionDesc);
  return siblings.length
    ? versionOf(join(dirname(path), siblings[0]), soname)
    : soname.slice(soname.indexOf('.so.') + 4);
}

const isFile = (p: string): boolean => {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
};

let cache: { key: string; value: CudaLibraries } | undefined;

/** Where each CUDA library is (or that it is missing), and the folders to put on the loader's path. */
export function findCudaLibraries(opts: FindOptions = {}): CudaLibraries {
  const env = opts.env ?? process.env;
  if (process.platform !== 'linux' && !opts.root) {
    return {
      supported: false,
      reason: `looking for the CUDA libraries is done on Linux (this is ${process.platform}); the CUDA installer puts them on the PATH`,
      libraries: CUDA_LIBRARIES.map(({ name, label, soname }) => ({ name, label, soname })),
      missing: [],
      loaderPath: [],
      searched: 0,
    };
  }
  const key = JSON.stringify([
    opts.root,
    opts.home,
    opts.ldconfig,
    ...[
      'LD_LIBRARY_PATH',
      'CONDA_PREFIX',
      'VIRTUAL_ENV',
      'CUDA_HOME',
      'CUDA_PATH',
      'CUDA_ROOT',
      'MAMBA_ROOT_PREFIX',
    ].map((k) => env[k]),
  ]);
  if (!opts.fresh && cache?.key === key) return cache.value;
  const ldcache = parseLdconfig(opts.ldconfig ?? ldconfigOutput());
  const where = places(opts, ldcache);
  const libraries: CudaLibraryStatus[] = CUDA_LIBRARIES.map(({ name, label, soname, pip }) => {
    for (const p of where) {
      const path = join(p.folder, soname);
      if (!isFile(path)) continue;
      return { name, label, soname, found: { path, version: versionOf(path, soname), ...p } };
    }
    return {
      name,
      label,
      soname,
      pip,
      install: `pip install ${pip} (into any Python environment), or a CUDA 13 toolkit`,
    };
  });
  const loaderPath: string[] = [];
  for (const l of libraries)
    if (l.found && (l.found.via === 'conda' || l.found.via === 'python' || l.found.via === 'toolkit'))
      if (!loaderPath.includes(l.found.folder)) loaderPath.push(l.found.folder);
  const value: CudaLibraries = {
    supported: true,
    libraries,
    missing: libraries.filter((l) => !l.found).map((l) => l.soname),
    loaderPath,
    searched: where.length,
  };
  cache = { key, value };
  return value;
}

/** The environment for a child process that will create CUDA sessions: LD_LIBRARY_PATH with the found folders first. */
export function cudaProcessEnv(
  base: NodeJS.ProcessEnv = process.env,
  libs: CudaLibraries = findCudaLibraries({ env: base }),
): NodeJS.ProcessEnv {
  if (!libs.loaderPath.length) return { ...base };
  const rest = (base.LD_LIBRARY_PATH ?? '').split(delimiter).filter((f) => f && !libs.loaderPath.includes(f));
  return { ...base, LD_LIBRARY_PATH: [...libs.loaderPath, ...rest].join(delimiter) };
}

// glibc's (and musl's) value; os.constants.dlopen does not list it. Node dlcloses a library that registers no addon,
// and without NODELETE that would unload it again.
const RTLD_NODELETE = 0x1000;

export interface PreloadResult {
  loaded: string[];
  failed: { path: string; error: string }[];
}

/**
 * Loads shared libraries by absolute path into this process, global and never unloaded, so that later loads find
 * them by soname. Retried while any succeeds, so the order of `paths` need not follow their dependencies.
 */
export function preloadLibraries(paths: string[]): PreloadResult {
  const flags = os.constants.dlopen.RTLD_NOW! | os.constants.dlopen.RTLD_GLOBAL! | RTLD_NODELETE;
  const loaded: string[] = [];
  let pending = [...paths];
  let errors = new Map<string, string>();
  while (pending.length) {
    errors = new Map();
    for (const path of pending) {
      try {
        process.dlopen({ exports: {} }, path, flags);
        loaded.push(path);
      } catch (e) {
        const msg = (e as Error).message;
        // Loaded, but not a Node addon: what we want (NODELETE keeps it).
        if (/did not self-register|Module did not/.test(msg)) loaded.push(path);
        else errors.set(path, msg.split('\n')[0]);
      }
    }
    const left = pending.filter((p) => errors.has(p));
    if (left.length === pending.length) break;
    pending = left;
  }
  return { loaded, failed: [...errors].map(([path, error]) => ({ path, error })) };
}

let preloaded: PreloadResult | undefined;

/**
 * Makes the found CUDA libraries loadable by soname in this already running process (CLI `doctor`, `serve`), before
 * onnxruntime loads its CUDA provider. Only libraries the loader would not find itself are loaded; once per process.
 */
export function preloadCudaLibraries(libs: CudaLibraries = findCudaLibraries()): PreloadResult {
  if (preloaded) return preloaded;
  if (process.platform !== 'linux') return (preloaded = { loaded: [], failed: [] });
  const paths: string[] = [];
  for (const l of libs.libraries) {
    const f = l.found;
    if (!f || f.via === 'LD_LIBRARY_PATH' || f.via === 'system') continue;
    if (l.name === 'cudnn')
      for (const part of CUDNN_PARTS) if (isFile(join(f.folder, part))) paths.push(join(f.folder, part));
    paths.push(f.path);
  }
  return (preloaded = preloadLibraries(paths));
}

/** One line per library, for `gpu` and `doctor`. */
export function describeCudaLibraries(libs: CudaLibraries): string[] {
  if (!libs.supported) return [libs.reason ?? 'not looked for on this platform'];
  return libs.libraries.map((l) =>
    l.found
      ? `${l.label} (${l.soname}): ${l.found.version} in ${l.found.folder} — ${l.found.where}`
      : `${l.label} (${l.soname}): missing — ${l.install}`,
  );
}
