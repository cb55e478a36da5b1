// npm's `prepare` (after `npm ci` / `npm install` in this folder): builds the UI, so that `delta-studio serve` and the
// desktop app have it after the README's first command. A production install (no dev dependencies) has no vite and
// no use for a rebuild: it skips, saying why.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

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
