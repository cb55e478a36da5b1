// The house's layering is enforced, not hoped for: the lint rule (build/eslint-layers.js) refuses each forbidden
// arrow in a file put where it would do harm, accepts the allowed ones, finds nothing in the tree, and native/ has no
// import cycle (type-only imports included).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { layerProblem } from '../build/eslint-layers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const eslint = new ESLint({ cwd: root });

/** The layer messages ESLint gives for `code` as if it were the file `path`. */
async function lint(path: string, code: string): Promise<string[]> {
  const [r] = await eslint.lintText(code, { filePath: join(root, path) });
  return r.messages.filter((m) => m.ruleId === 'layers/imports').map((m) => m.message);
}

const files = (dir: string, ext: RegExp): string[] =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p, ext) : ext.test(p) ? [p] : [];
  });

test('lint refuses each import the design forbids, naming the rule it breaks', async () => {
  const wrong: [string, string, RegExp][] = [
    ['native/store/bad.ts', "import { startTrainer } from '../train/process.js';", /must never import native\/train/],
    ['native/train/bad.ts', "import { app } from 'electron';", /no Electron/],
    ['native/models/bad.ts', "import { createApp } from '../../electron/main.js';", /never imports electron/],
    ['native/export/bad.ts', "import { createService } from '../api/service.js';", /may not import native\/api/],
    ['native/onnx/bad.ts', "import { Workspace } from '../store/workspace.js';", /imports go down the floors/],
    ['native/delta/bad.ts', "import { METHODS } from '../contract/methods.js';", /only its vocabulary and data types/],
    ['native/contract/bad.ts', "import type { Workspace } from '../store/workspace.js';", /imports nothing of native/],
    ['renderer/src/lib/bad.ts', "import { Workspace } from '../../../native/store/workspace.js';", /engine internal/],
    ['renderer/src/lib/bad.ts', "import { readFileSync } from 'node:fs';", /sandboxed in a browser/],
  ];
  for (const [path, code, why] of wrong) {
    const messages = await lint(path, code);
    assert.equal(messages.length, 1, `${path}: ${code} → ${JSON.stringify(messages)}`);
    assert.match(messages[0], why);
  }
});

test('lint accepts the arrows the design draws', async () => {
  const right: [string, string][] = [
    ['native/app/ok.ts', "import { Workspace } from '../store/workspace.js';"],
    ['native/app/ok.ts', "import { RUN_STATUSES } from '../contract/index.js';"],
    ['native/api/ok.ts', "import { Application } from '../app/index.js';"],
    ['native/store/ok.ts', "import { RUN_STATUSES } from '../contract/vocabulary.js';"],
    ['native/data/ok.ts', "import type { LengthStats } from '../contract/types.js';"],
    ['native/train/ok.ts', "import { buildGradients } from '../autodiff/backward.js';"],
    ['renderer/src/lib/ok.ts', "import type { RunConfig } from '../../../native/contract/index.js';"],
    ['electron/ok.ts', "import type { Service } from '../native/api/service.js';"],
  ];
  for (const [path, code] of right) assert.deepEqual(await lint(path, code), [], `${path}: ${code}`);
});

test('the tree keeps the rules: no layer problem in any source file, Svelte components included', () => {
  const problems: string[] = [];
  const sources = [
    ...files(join(root, 'native'), /\.ts$/),
    ...files(join(root, 'electron'), /\.ts$/),
    ...files(join(root, 'renderer/src'), /\.(ts|svelte)$/),
  ];
  for (const f of sources) {
    for (const m of readFileSync(f, 'utf8').matchAll(/(?:import|export)[^'";]*?from\s+'([^']+)'/g)) {
      const p = layerProblem(f, m[1]);
      if (p) problems.push(`${relative(root, f)}: ${m[1]}: ${p}`);
    }
  }
  assert.ok(sources.length > 150, `read ${sources.length} files`);
  assert.deepEqual(problems, []);
});

test('native/ has no import cycle, type-only imports included', () => {
  const all = files(join(root, 'native'), /\.ts$/);
  const known = new Set(all);
  const deps = new Map(
    all.map((f) => [
      f,
      [...readFileSync(f, 'utf8').matchAll(/(?:import|export)[^'";]*?from\s+'(\.[^']+)'/g)]
        .map((m) => resolve(dirname(f), m[1]).replace(/\.js$/, '.ts'))
        .filter((d) => known.has(d)),
    ]),
  );
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const cycles: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    path.push(f);
    for (const d of deps.get(f)!) {
      if (state.get(d) === 'open')
        cycles.push([...path.slice(path.indexOf(d)), d].map((x) => relative(root, x)).join(' → '));
      else if (!state.has(d)) visit(d);
    }
    path.pop();
    state.set(f, 'done');
  };
  for (const f of all) if (!state.has(f)) visit(f);
  assert.ok(deps.size > 100, `read ${deps.size} modules`);
  assert.deepEqual(cycles, []);
});
