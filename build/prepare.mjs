// npm's `prepare` (after `npm ci` / `npm install` in this folder): builds the resident-state addon where a C++
// compiler is found (build-native.mjs; without one it says so and training keeps parameters on the host), and the UI,
// so that `delta-studio serve` and the desktop app have it after the README's first command. A production install (no
// dev dependencies) has no vite and no use for a UI rebuild: it skips that, saying why.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

spawnSync(process.execPath, [new URL('./build-native.mjs', import.meta.url).pathname], { stdio: 'inherit' });

if (!existsSync(new URL('../node_modules/vite/package.json', import.meta.url))) {
  process.stdout.write('prepare: vite is not installed (a production install); the UI is not rebuilt\n');
  process.exit(0);
}
const r = spawnSync(
  process.execPath,
  ['node_modules/vite/bin/vite.js', 'build', '--config', 'renderer/vite.config.ts', '--logLevel', 'warn'],
  {
    stdio: 'inherit',
    cwd: new URL('..', import.meta.url),
  },
);
process.exit(r.status ?? 1);
