// `delta-studio eval <run-dir>` and `predict`: a trained delta on held-out data or on text typed by the user — a run's
// own delta (from its folder), or plugins of the workspace (or .delta files) attached together to their base.
import { SPLITS, type Prediction, type SplitName } from '../contract/index.js';
import { Application } from '../app/index.js';
import { predictOnce, resolvePlugins } from '../app/playground.js';
import { evaluateRun, predictWithRun } from '../app/run-eval.js';
import { oneOf } from './flags.js';
import type { Values } from './output.js';
import { workspaceDir } from './workspace-dir.js';

const show = (p: Prediction): string =>
  'label' in p
    ? `${p.label}  (${Object.entries(p.probabilities)
        .map(([l, x]) => `${l} ${(100 * x).toFixed(1)}%`)
        .join(', ')})`
    : 'value' in p
      ? String(p.value)
      : p.generated;

function maxNewTokens(v: Values): number {
  if (v['max-new-tokens'] === undefined) return 32;
  const n = Number(v['max-new-tokens']);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--max-new-tokens must be a whole number ≥ 1, got "${String(v['max-new-tokens'])}"`);
  return n;
}

export async function evalCommand(runDir: string | undefined, v: Values): Promise<number> {
  if (!runDir) throw new Error('give the run folder: delta-studio eval <run-dir>');
  const split = (typeof v.split === 'string' ? v.split : 'validation') as SplitName;
  if (!SPLITS.includes(split)) throw new Error(`--split must be ${oneOf(SPLITS)}, got "${split}"`);
  const { run, rows, metrics } = await evaluateRun(runDir, split, v.best === true);
  if (v.json) process.stdout.write(`${JSON.stringify({ runId: run.id, split, rows, metrics })}\n`);
  else
    process.stdout.write(
      `${split} (${rows} rows): ${Object.entries(metrics)
        .map(([k, x]) => `${k} ${x.toFixed(4)}`)
        .join(', ')}\n`,
    );
  return 0;
}

export async function predictCommand(runDir: string | undefined, v: Values): Promise<number> {
  if (!runDir)
    throw new Error(
      'predict needs what to predict with: --plugin NAME[@VERSION] (a plugin of the workspace, or a .delta file; repeatable), or a run folder: delta-studio predict <run-dir> --text "…"',
    );
  if (typeof v.text !== 'string' || !v.text)
    throw new Error('predict needs --text "…" (and --text-pair for a pair task)');
  const p = await predictWithRun(
    runDir,
    { text: v.text, textPair: typeof v['text-pair'] === 'string' ? v['text-pair'] : undefined },
    { best: v.best === true, maxNewTokens: maxNewTokens(v) },
  );
  process.stdout.write(v.json ? `${JSON.stringify(p)}\n` : `${show(p)}\n`);
  return 0;
}

/**
 * `predict --plugin REF [--plugin REF …]`: plugins from the workspace (or .delta files) attached together to their
 * base model, on one input; with --compare-base the bare base's answer too, side by side.
 */
export async function predictWithPlugins(v: Record<string, string | boolean | string[] | undefined>): Promise<number> {
  const refs = v.plugin as string[];
  const flags = v as Values;
  if (typeof v.text !== 'string' || !v.text)
    throw new Error('predict needs --text "…" (and --text-pair for a pair task)');
  const model = typeof v.model === 'string' ? v.model : undefined;
  // .delta files with --model need no workspace.
  const needsWorkspace = !(model && refs.every((r) => r.endsWith('.delta')));
  const app = new Application();
  try {
    if (needsWorkspace) await app.open(workspaceDir(flags), false);
    const { plugins, modelDir } = resolvePlugins(app.workspace, refs, model);
    const input = { text: v.text, ...(typeof v['text-pair'] === 'string' ? { text_pair: v['text-pair'] } : {}) };
    const r = await predictOnce(modelDir, plugins, input, {
      device: (v.device as 'auto' | 'cpu' | 'cuda' | undefined) ?? 'auto',
      force: v.force === true,
      compareBase: v['compare-base'] === true,
      maxNewTokens: maxNewTokens(flags),
    });
    if (v.json)
      process.stdout.write(
        `${JSON.stringify({ plugins: r.attached, prediction: r.prediction, base: r.base, baseMessage: r.baseMessage })}\n`,
      );
    else {
      process.stdout.write(`${r.attached.join(' + ')}: ${show(r.prediction)}\n`);
      if (r.base) process.stdout.write(`base: ${show(r.base)}\n`);
      else if (r.baseMessage) process.stdout.write(`base: no answer — ${r.baseMessage}\n`);
    }
    return 0;
  } finally {
    await app.close();
  }
}
