// Finding the CUDA libraries (native/runtime/cuda-libs.ts) in fake folder layouts — a CUDA toolkit, pip wheels in a
// virtualenv, conda — and making them used: with small shared libraries built by gcc that carry the real sonames, a
// fake provider linked against them by soname loads after a preload by absolute path (an already running process),
// or with the environment given to a new process, and not otherwise.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cudaProcessEnv, describeCudaLibraries, findCudaLibraries } from '../native/runtime/cuda-libs.js';

const repo = fileURLToPath(new URL('..', import.meta.url));

/** A library file: a link `soname` → the versioned file when a version is given (as toolkits and conda ship), else
 *  the soname itself (as NVIDIA's wheels ship). */
function lib(dir: string, soname: string, version?: string, bytes: Buffer | string = ''): string {
  mkdirSync(dir, { recursive: true });
  if (!version) {
    writeFileSync(join(dir, soname), bytes);
    return join(dir, soname);
  }
  // libcudart.so.13 → libcudart.so.13.0.96: the full version follows ".so."
  const real = `${soname.slice(0, soname.indexOf('.so.') + 3)}.${version}`;
  writeFileSync(join(dir, real), bytes);
  symlinkSync(real, join(dir, soname));
  return join(dir, soname);
}

const CORE = ['libcudart.so.13', 'libcublasLt.so.13', 'libcublas.so.13', 'libcurand.so.10'];
const fake = (): { root: string; home: string } => {
  const root = mkdtempSync(join(tmpdir(), 'ds-cudalibs-'));
  const home = join(root, 'home', 'ada');
  mkdirSync(home, { recursive: true });
  return { root, home };
};
const found = (r: ReturnType<typeof findCudaLibraries>) =>
  Object.fromEntries(
    r.libraries.map((l) => [l.soname, l.found ? [l.found.via, l.found.folder, l.found.version] : null]),
  );

describe('finding the CUDA libraries', () => {
  test('a CUDA toolkit not in the linker cache: found with versions from the file names; cuDNN missing, with advice', () => {
    const { root, home } = fake();
    const tk = join(root, 'usr/local/cuda-13.0/targets/x86_64-linux/lib');
    lib(tk, 'libcudart.so.13', '13.0.96');
    lib(tk, 'libcublas.so.13', '13.1.0.3');
    lib(tk, 'libcublasLt.so.13', '13.1.0.3');
    lib(tk, 'libcurand.so.10', '10.4.0.35');
    lib(join(root, 'usr/local/cuda-12.4/lib64'), 'libcudart.so.12', '12.4.127');
    const r = findCudaLibraries({ root, home, env: {}, ldconfig: '', fresh: true });
    assert.deepEqual(found(r), {
      'libcudart.so.13': ['toolkit', tk, '13.0.96'],
      'libcublasLt.so.13': ['toolkit', tk, '13.1.0.3'],
      'libcublas.so.13': ['toolkit', tk, '13.1.0.3'],
      'libcurand.so.10': ['toolkit', tk, '10.4.0.35'],
      'libcudnn.so.9': null,
    });
    assert.deepEqual(r.missing, ['libcudnn.so.9']);
    assert.deepEqual(r.loaderPath, [tk]);
    assert.match(r.libraries[4].install!, /pip install nvidia-cudnn-cu13/);
    const lines = describeCudaLibraries(r);
    assert.match(lines[0], /CUDA 13 runtime \(libcudart\.so\.13\): 13\.0\.96 in .*cuda-13\.0.* CUDA toolkit/);
    assert.match(lines[4], /cuDNN 9 \(libcudnn\.so\.9\): missing — pip install nvidia-cudnn-cu13/);
  });

  test('pip wheels in /opt/*/.venv (the GPU test machine) and a conda env: each found, active env first', () => {
    const { root, home } = fake();
    const site = join(root, 'opt/torch/.venv/lib/python3.12/site-packages/nvidia');
    for (const s of CORE) lib(join(site, 'cu13/lib'), s);
    lib(join(site, 'cudnn/lib'), 'libcudnn.so.9');
    lib(join(site, 'cudnn/lib'), 'libcudnn_graph.so.9');
    const condaEnv = join(home, 'miniforge3/envs/train');
    lib(join(condaEnv, 'lib'), 'libcudnn.so.9', '9.13.0');
    lib(join(condaEnv, 'lib/python3.11/site-packages/nvidia/cublas/lib'), 'libcublas.so.13');

    // Nothing active: conda installations come before other Python environments.
    let r = findCudaLibraries({ root, home, env: {}, ldconfig: '', fresh: true });
    const cu13 = join(site, 'cu13/lib');
    assert.deepEqual(found(r), {
      'libcudart.so.13': ['python', cu13, '13'],
      'libcublasLt.so.13': ['python', cu13, '13'],
      'libcublas.so.13': ['python', join(condaEnv, 'lib/python3.11/site-packages/nvidia/cublas/lib'), '13'],
      'libcurand.so.10': ['python', cu13, '10'],
      'libcudnn.so.9': ['conda', join(condaEnv, 'lib'), '9.13.0'],
    });
    assert.match(r.libraries[0].found!.where, /pip wheel in the Python environment .*opt\/torch\/\.venv/);

    // The venv active: all from it (cuBLAS with its own cuBLASLt, cuDNN from the same environment).
    r = findCudaLibraries({ root, home, env: { VIRTUAL_ENV: join(root, 'opt/torch/.venv') }, ldconfig: '' });
    assert.deepEqual(
      r.libraries.map((l) => l.found?.folder),
      [cu13, cu13, cu13, cu13, join(site, 'cudnn/lib')],
    );
    assert.deepEqual(r.loaderPath, [cu13, join(site, 'cudnn/lib')]);
    assert.deepEqual(r.missing, []);

    // The conda env active: its own first.
    r = findCudaLibraries({ root, home, env: { CONDA_PREFIX: condaEnv }, ldconfig: '' });
    assert.equal(r.libraries[4].found!.folder, join(condaEnv, 'lib'));
    assert.match(r.libraries[4].found!.where, /active conda environment/);
  });

  test('order: LD_LIBRARY_PATH, the linker cache, toolkits, then Python environments (pyenv, user site)', () => {
    const { root, home } = fake();
    const mine = join(root, 'mine');
    lib(mine, 'libcudart.so.13', '13.0.50');
    const sys = join(root, 'usr/lib/x86_64-linux-gnu');
    lib(sys, 'libcurand.so.10', '10.4.1');
    const tk = join(root, 'usr/local/cuda/lib64');
    for (const s of CORE) lib(tk, s, s.endsWith('.10') ? '10.4.0' : '13.0.96');
    const pyenv = join(home, '.pyenv/versions/3.12.4/lib/python3.12/site-packages/nvidia/cudnn/lib');
    lib(pyenv, 'libcudnn.so.9');
    const user = join(home, '.local/lib/python3.11/site-packages/nvidia/cudnn/lib');
    lib(user, 'libcudnn.so.9');
    const ldconfig = [
      "864 libs found in cache `/etc/ld.so.cache'",
      `\tlibcurand.so.10 (libc6,x86-64) => ${sys}/libcurand.so.10`,
      `\tlibfoo.so.1 (libc6) => /lib/i386-linux-gnu/libfoo.so.1`,
    ].join('\n');
    const env = { LD_LIBRARY_PATH: `${mine}:/elsewhere` };
    const r = findCudaLibraries({ root, home, env, ldconfig, fresh: true });
    assert.deepEqual(found(r), {
      'libcudart.so.13': ['LD_LIBRARY_PATH', mine, '13.0.50'],
      'libcublasLt.so.13': ['toolkit', tk, '13.0.96'],
      'libcublas.so.13': ['toolkit', tk, '13.0.96'],
      'libcurand.so.10': ['system', sys, '10.4.1'],
      'libcudnn.so.9': ['python', user, '9'],
    });
    // The loader finds LD_LIBRARY_PATH and system ones itself: only the others go on its path, before the user's.
    assert.deepEqual(r.loaderPath, [tk, user]);
    assert.equal(cudaProcessEnv({ ...env, HOME: home }, r).LD_LIBRARY_PATH, `${tk}:${user}:${mine}:/elsewhere`);
    assert.equal(cudaProcessEnv({ PATH: '/bin' }, { ...r, loaderPath: [] }).LD_LIBRARY_PATH, undefined);
    // Without the user site's wheel, pyenv's is next; without either, cuDNN is missing.
    rmSync(join(home, '.local'), { recursive: true });
    const r2 = findCudaLibraries({ root, home, env, ldconfig, fresh: true });
    assert.equal(r2.libraries[4].found!.folder, pyenv);
    assert.match(r2.libraries[4].found!.where, /\.pyenv\/versions\/3\.12\.4/);
    rmSync(join(home, '.pyenv'), { recursive: true });
    assert.deepEqual(findCudaLibraries({ root, home, env, ldconfig, fresh: true }).missing, ['libcudnn.so.9']);
  });
});

// --- loading: tiny libraries with the real sonames, and a fake provider linked against them by soname ---------------

const hasGcc = spawnSync('gcc', ['--version']).status === 0;

function gcc(args: string[]): void {
  execFileSync('gcc', ['-shared', '-fPIC', ...args], { stdio: 'pipe' });
}

/** Builds the libraries in a pip-wheel layout under `root`, and a provider that needs them; returns the provider. */
function buildFakes(root: string): { provider: string; wheel: string } {
  const site = join(root, 'opt/app/.venv/lib/python3.12/site-packages/nvidia');
  const wheel = join(site, 'cu13/lib');
  const cudnn = join(site, 'cudnn/lib');
  mkdirSync(wheel, { recursive: true });
  mkdirSync(cudnn, { recursive: true });
  const src = join(root, 'src');
  mkdirSync(src);
  const c = (name: string, body: string): string => {
    writeFileSync(join(src, name), body);
    return join(src, name);
  };
  gcc([
    c('rt.c', 'int ds_rt(void) { return 13; }\n'),
    '-o',
    join(wheel, 'libcudart.so.13'),
    '-Wl,-soname,libcudart.so.13',
  ]);
  gcc([
    c('lt.c', 'int ds_lt(void) { return 7; }\n'),
    '-o',
    join(wheel, 'libcublasLt.so.13'),
    '-Wl,-soname,libcublasLt.so.13',
  ]);
  // cuBLAS needs cuBLASLt, by soname, as the real one does.
  gcc([
    c('blas.c', 'int ds_lt(void);\nint ds_blas(void) { return 100 + ds_lt(); }\n'),
    '-o',
    join(wheel, 'libcublas.so.13'),
    '-Wl,-soname,libcublas.so.13',
    `-L${wheel}`,
    '-l:libcublasLt.so.13',
  ]);
  gcc([
    c('rand.c', 'int ds_rand(void) { return 10; }\n'),
    '-o',
    join(wheel, 'libcurand.so.10'),
    '-Wl,-soname,libcurand.so.10',
  ]);
  gcc([
    c('graph.c', 'int ds_graph(void) { return 9; }\n'),
    '-o',
    join(cudnn, 'libcudnn_graph.so.9'),
    '-Wl,-soname,libcudnn_graph.so.9',
  ]);
  // cuDNN's shim dlopens its sub-libraries by soname.
  gcc([
    c(
      'cudnn.c',
      '#include <dlfcn.h>\nint ds_cudnn(void) { return dlopen("libcudnn_graph.so.9", RTLD_NOW) ? 9 : -1; }\n',
    ),
    '-o',
    join(cudnn, 'libcudnn.so.9'),
    '-Wl,-soname,libcudnn.so.9',
    '-ldl',
  ]);
  // The provider: NEEDED the four by soname, and libcudnn.so.9 by dlopen, as onnxruntime's is; it writes what it saw.
  const provider = join(root, 'provider/libonnxruntime_providers_cuda.so');
  mkdirSync(join(root, 'provider'));
  gcc([
    c(
      'provider.c',
      [
        '#include <dlfcn.h>',
        '#include <stdio.h>',
        '#include <stdlib.h>',
        'int ds_rt(void); int ds_blas(void); int ds_rand(void);',
        '__attribute__((constructor)) static void init(void) {',
        '  void* h = dlopen("libcudnn.so.9", RTLD_NOW);',
        '  int (*cudnn)(void) = h ? (int (*)(void))dlsym(h, "ds_cudnn") : 0;',
        '  FILE* f = fopen(getenv("DS_MARK"), "w");',
        '  fprintf(f, "rt=%d blas=%d rand=%d cudnn=%d", ds_rt(), ds_blas(), ds_rand(), cudnn ? cudnn() : -2);',
        '  fclose(f);',
        '}',
        '',
      ].join('\n'),
    ),
    '-o',
    provider,
    `-L${wheel}`,
    '-l:libcudart.so.13',
    '-l:libcublas.so.13',
    '-l:libcublasLt.so.13',
    '-l:libcurand.so.10',
    '-ldl',
  ]);
  return { provider, wheel };
}

describe('making them used', { skip: hasGcc ? false : 'no gcc on this machine' }, () => {
  const root = mkdtempSync(join(tmpdir(), 'ds-cudaload-'));
  const fakes = hasGcc ? buildFakes(root) : { provider: '', wheel: '' };
  const home = join(root, 'home');
  mkdirSync(home, { recursive: true });
  const script = join(root, 'load.ts');
  writeFileSync(
    script,
    [
      `import { findCudaLibraries, preloadCudaLibraries } from ${JSON.stringify(join(repo, 'native/runtime/cuda-libs.ts'))};`,
      `const [mode, root, home, provider] = process.argv.slice(2);`,
      `if (mode === 'preload') {`,
      `  const r = preloadCudaLibraries(findCudaLibraries({ root, home, env: {}, ldconfig: '' }));`,
      `  process.stdout.write(JSON.stringify(r) + '\\n');`,
      `}`,
      `try { process.dlopen({ exports: {} }, provider); } catch (e) { process.stdout.write('dlopen: ' + e.message + '\\n'); }`,
      '',
    ].join('\n'),
  );
  const run = (mode: string, env: NodeJS.ProcessEnv): { out: string; mark: string } => {
    const mark = join(root, `mark-${mode}`);
    const out = execFileSync(process.execPath, ['--import', 'tsx', script, mode, root, home, fakes.provider], {
      cwd: repo,
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ...env, DS_MARK: mark },
    });
    let m = '';
    try {
      m = readFileSync(mark, 'utf8');
    } catch {
      // not written: the provider did not load
    }
    return { out, mark: m };
  };

  test('without help the provider does not load: its NEEDED sonames are not on the loader path', () => {
    const r = run('plain', {});
    assert.match(r.out, /dlopen: libcu\w+\.so\.1[03]: cannot open shared object file/);
    assert.equal(r.mark, '');
  });

  test('in a running process: preloading by absolute path makes NEEDED and dlopen-by-soname resolve', () => {
    const r = run('preload', {});
    const pre = JSON.parse(r.out.split('\n')[0]) as { loaded: string[]; failed: unknown[] };
    assert.deepEqual(pre.failed, []);
    assert.equal(pre.loaded.length, 6, 'four libraries, cuDNN and its sub-library');
    // The provider loaded (it is no Node addon, so dlopen still says so), and every call reached its library.
    assert.match(r.out, /dlopen: Module did not self-register/);
    assert.equal(r.mark, 'rt=13 blas=107 rand=10 cudnn=9');
  });

  test('in a new process: cudaProcessEnv puts the folders on LD_LIBRARY_PATH', () => {
    const libs = findCudaLibraries({ root, home, env: {}, ldconfig: '', fresh: true });
    const env = cudaProcessEnv({ LD_LIBRARY_PATH: '/nowhere' }, libs);
    assert.equal(env.LD_LIBRARY_PATH!.split(':')[0], fakes.wheel);
    const r = run('plain', { LD_LIBRARY_PATH: env.LD_LIBRARY_PATH });
    assert.equal(r.mark, 'rt=13 blas=107 rand=10 cudnn=9');
  });
});
