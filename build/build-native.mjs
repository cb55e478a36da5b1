// Builds the resident-state addon (native/runtime/resident/resident.cc) with the system's C++ compiler against
// Node-API's headers (those of the Node running this, which every Node-API version after it, Electron's included,
// accepts). No onnxruntime header or library is needed to build: the addon finds onnxruntime at run time. Where there
// is no compiler it says so and exits 0 — training then keeps parameters on the host (runtime/resident.ts says why).
// `--strict` (the tests' build) fails instead.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const src = join(root, 'native/runtime/resident/resident.cc');
const out = join(root, 'native/runtime/resident/build/resident.node');
const strict = process.argv.includes('--strict');

function skip(why) {
  process.stdout.write(`build:native: ${why}; training keeps parameters on the host\n`);
  process.exit(strict ? 1 : 0);
}

if (process.platform !== 'linux') skip(`the resident-state addon is built on Linux only (this is ${process.platform})`);
const include = [
  join(dirname(process.execPath), '..', 'include', 'node'),
  '/usr/include/node',
  '/usr/local/include/node',
].find((d) => existsSync(join(d, 'node_api.h')));
if (!include) skip('no Node-API headers (node_api.h) next to this Node');
const cxx = process.env.CXX ?? 'c++';
if (spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status !== 0)
  skip(`no C++ compiler (${cxx}; apt-get install g++)`);

mkdirSync(dirname(out), { recursive: true });
const tmp = `${out}.${process.pid}.tmp`;
const r = spawnSync(
  cxx,
  [
    '-std=c++17',
    '-O2',
    '-fPIC',
    '-shared',
    '-fvisibility=hidden',
    '-Wall',
    '-Werror',
    '-DNODE_GYP_MODULE_NAME=resident',
    '-DNAPI_VERSION=8',
    `-I${include}`,
    src,
    '-o',
    tmp,
    '-ldl',
  ],
  { stdio: 'inherit' },
);
if (r.status !== 0) {
  rmSync(tmp, { force: true });
  skip(`${cxx} could not build ${src}`);
}
renameSync(tmp, out);
process.stdout.write(`build:native: ${out}\n`);
