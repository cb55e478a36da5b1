// Bundles the Electron main process, the sandboxed preload, the utilityProcess trainer and the engine's worker threads
// (exports, sessions) into dist-electron/ (CommonJS:
// a sandboxed preload cannot load ES modules, and one format for all keeps __dirname meaningful).
// Native modules stay external: electron-builder ships them (asarUnpack) rebuilt for Electron's ABI.
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const external = ['electron', 'onnxruntime-node', 'better-sqlite3'];
const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node22', // Electron 39 ships Node 22
  sourcemap: 'linked',
  logLevel: 'info',
  external,
  // import.meta.url has no CommonJS meaning: point it at the bundle's own file.
  define: { 'import.meta.url': '__importMetaUrl' },
  banner: { js: "const __importMetaUrl = require('url').pathToFileURL(__filename).href;" },
};

await Promise.all([
  build({
    ...common,
    // Workers and processes the engine starts by name beside the bundle that starts them (native/messages/ports.ts):
    // each must be built there too (tests/electron.test.ts checks that every name started has an entry here).
    entryPoints: {
      main: 'electron/entry.ts',
      trainer: 'electron/trainer-entry.ts',
      worker: 'native/export/worker.ts',
      'session-worker': 'native/runtime/session-worker.ts',
    },
    outdir: 'dist-electron',
    outExtension: { '.js': '.cjs' },
  }),
  // The preload needs only the contract's names and zod, never node built-ins beyond what the sandbox offers.
  build({
    ...common,
    entryPoints: { preload: 'electron/preload-entry.ts' },
    outdir: 'dist-electron',
    outExtension: { '.js': '.cjs' },
    platform: 'browser',
    define: {},
    banner: {},
    external: ['electron'],
  }),
]);

// The resident-state addon, where runtime/resident.ts looks for it from the bundle (./resident/build/ beside it):
// Node-API is the same ABI in Electron, so the addon `npm install` built serves. Without it, training keeps parameters
// on the host.
const addon = join(root, 'native/runtime/resident/build/resident.node');
if (existsSync(addon)) {
  mkdirSync(join(root, 'dist-electron/resident/build'), { recursive: true });
  copyFileSync(addon, join(root, 'dist-electron/resident/build/resident.node'));
}
