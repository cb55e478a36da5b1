// The house's layering as a lint rule: which folder may import which. native/ is built in floors — an import may go
// to its own folder or a floor below, never up — and some arrows must never be, whatever the floors say (the engine
// never imports Electron or the UI, the store never runs training, the UI sees only the contract of native/).
import { dirname, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** native/<folder> → its floor; an import may only go to the same folder or a lower floor. */
export const FLOORS = {
  files: 0,
  messages: 0,
  rng: 0,
  onnx: 1,
  runtime: 2,
  hub: 2,
  demo: 2,
  autodiff: 3,
  models: 3,
  data: 4,
  delta: 4,
  train: 5,
  plugins: 6,
  store: 7,
  export: 8,
  app: 9,
  api: 10,
  cli: 11,
};

/** Arrows the floors would allow but the design forbids: the store records, it never trains or exports. */
const NEVER = {
  store: ['train', 'runtime', 'export', 'autodiff'],
};

/**
 * Of the contract, every floor may use its words (tasks, statuses, …) and its data types (what crosses it: the
 * engine builds these directly); its methods, schemas and errors belong to the application and the front ends.
 */
const SHARED = ['native/contract/vocabulary.ts', 'native/contract/types.ts'];

const posix = (p) => p.split(sep).join('/');

/** 'native/store', 'native/contract', 'renderer', 'electron', 'tests', … for a path under the project root. */
function zoneOf(file) {
  // An import names the built file (x.js); the source is x.ts.
  const rel = posix(relative(ROOT, file)).replace(/\.js$/, '.ts');
  if (rel.startsWith('..')) return { rel, zone: null, folder: null };
  const parts = rel.split('/');
  if (parts[0] === 'native') {
    const folder = parts.length > 2 ? parts[1] : parts[1].replace(/\.ts$/, '');
    return { rel, zone: 'native', folder };
  }
  return { rel, zone: parts[0], folder: null };
}

/** Why `from` may not import `target` (a resolved path, or a bare package name), or null when it may. */
export function layerProblem(fromFile, specifier) {
  const from = zoneOf(fromFile);
  const bare = !specifier.startsWith('.') && !specifier.startsWith('/');
  if (bare) {
    const electron = specifier === 'electron' || specifier.startsWith('electron/');
    if (from.zone === 'native' && electron) return 'native/ is the engine: plain Node, no Electron';
    if (from.rel.startsWith('renderer/src/') && (electron || specifier.startsWith('node:')))
      return 'the UI runs sandboxed in a browser: no Node or Electron modules';
    return null;
  }
  const to = zoneOf(resolve(dirname(fromFile), specifier));
  if (from.zone === 'native' && (to.zone === 'electron' || to.zone === 'renderer'))
    return `native/ is the engine: it never imports ${to.zone}/ (the shell and the UI sit on top of it)`;
  if (from.rel.startsWith('renderer/src/') && to.zone === 'native' && to.folder !== 'contract')
    return `the UI imports nothing of native/ but the contract (native/contract): ${to.rel} is an engine internal`;
  if (from.zone !== 'native' || to.zone !== 'native' || from.folder === to.folder) return null;
  if (from.folder === 'contract')
    return `the contract imports nothing of native/ but itself (${to.rel}): the UI bundles it`;
  if (to.folder === 'contract') {
    if (FLOORS[from.folder] < FLOORS.app && !SHARED.includes(to.rel))
      return `native/${from.folder} is below the application layer: of the contract it may use only its vocabulary and data types (${SHARED.join(', ')})`;
    return null;
  }
  if ((NEVER[from.folder] ?? []).includes(to.folder))
    return `native/${from.folder} must never import native/${to.folder} (the store records; something above both runs)`;
  const a = FLOORS[from.folder];
  const b = FLOORS[to.folder];
  if (a === undefined) return `native/${from.folder} has no floor in build/eslint-layers.js: give it one`;
  if (b === undefined) return `native/${to.folder} has no floor in build/eslint-layers.js: give it one`;
  if (b > a)
    return `native/${from.folder} (floor ${a}) may not import native/${to.folder} (floor ${b}): imports go down the floors, never up`;
  return null;
}

const check = (context, node) => {
  const src = node.source;
  if (!src || src.type !== 'Literal' || typeof src.value !== 'string') return;
  const problem = layerProblem(context.filename, src.value);
  if (problem) context.report({ node: src, message: `${src.value}: ${problem}` });
};

export const layersPlugin = {
  rules: {
    imports: {
      meta: {
        type: 'problem',
        docs: { description: 'imports follow the floors of the house (build/eslint-layers.js)' },
      },
      create: (context) => ({
        ImportDeclaration: (node) => check(context, node),
        ExportNamedDeclaration: (node) => check(context, node),
        ExportAllDeclaration: (node) => check(context, node),
        ImportExpression: (node) => check(context, node),
      }),
    },
  },
};
