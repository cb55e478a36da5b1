// `delta-studio eval <run-dir>` and `predict`: a trained delta on held-out data or on text typed by the user — a run's
// own delta (from its folder), or plugins of the workspace (or .delta files) attached together to their base.
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { SPLITS, type ChatMessage, type ChatReply, type Prediction, type SplitName } from '../contract/index.js';
import { Application } from '../app/index.js';
import { openChat, predictOnce, resolvePlugins, trainedChatTemplate } from '../app/playground.js';
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

function maxNewTokens(v: Values, dflt = 32): number {
  if (v['max-new-tokens'] === undefined) return dflt;
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

/** `--chat-template`: a name, or a .jinja file whose text is the template. */
export function chatTemplateFlag(v: Values): string | undefined {
  const t = v['chat-template'];
  if (typeof t !== 'string' || t === '') return undefined;
  return /\.jinja$/i.test(t) || (t.includes('/') && existsSync(t)) ? readFileSync(t, 'utf8') : t;
}

/**
 * `predict --plugin REF --chat`: a conversation with the plugins, their replies printed as they are generated (and
 * the bare base's after each with --compare-base). With --text, one user message (after --system, if given); without,
 * every line read from the input is the user's next message.
 */
async function chatWithPlugins(
  v: Record<string, string | boolean | string[] | undefined>,
  app: Application,
  refs: string[],
): Promise<number> {
  const flags = v as Values;
  const json = v.json === true;
  const { plugins, modelDir } = resolvePlugins(app.workspace, refs, typeof v.model === 'string' ? v.model : undefined);
  const chat = await openChat(modelDir, plugins, {
    device: (v.device as 'auto' | 'cpu' | 'cuda' | undefined) ?? 'auto',
    force: v.force === true,
    chatTemplate: chatTemplateFlag(flags) ?? trainedChatTemplate(app.workspace, plugins),
  });
  const limit = maxNewTokens(flags, 128);
  const out = json ? process.stderr : process.stdout;
  const messages: ChatMessage[] = typeof v.system === 'string' ? [{ role: 'system', content: v.system }] : [];
  const turns: { user: string; plugins: ChatReply; base: ChatReply | null }[] = [];
  const turn = async (user: string): Promise<void> => {
    messages.push({ role: 'user', content: user });
    out.write(`${chat.attached.join(' + ')}: `);
    const mine = await chat.reply(messages, false, limit, (d) => out.write(d));
    out.write('\n');
    let base: ChatReply | null = null;
    if (v['compare-base'] === true) {
      out.write('base: ');
      base = await chat.reply(messages, true, limit, (d) => out.write(d));
      out.write('\n');
    }
    // The conversation goes on from the plugins' reply.
    messages.push({ role: 'assistant', content: mine.text.trim() || '…' });
    turns.push({ user, plugins: mine, base });
  };
  try {
    out.write(`chat template: ${chat.template.name} (${chat.template.source})\n`);
    if (typeof v.text === 'string' && v.text) await turn(v.text);
    else {
      const lines = createInterface({ input: process.stdin, terminal: false });
      if (process.stdin.isTTY) out.write('(one message a line; Ctrl-D ends)\n');
      for await (const line of lines) if (line.trim()) await turn(line);
    }
    if (json)
      process.stdout.write(
        `${JSON.stringify({ plugins: chat.attached, template: { name: chat.template.name, source: chat.template.source }, turns })}\n`,
      );
    return 0;
  } finally {
    await chat.close();
  }
}

/**
 * `predict --plugin REF [--plugin REF …]`: plugins from the workspace (or .delta files) attached together to their
 * base model, on one input; with --compare-base the bare base's answer too, side by side. With --chat, a conversation.
 */
export async function predictWithPlugins(v: Record<string, string | boolean | string[] | undefined>): Promise<number> {
  const refs = v.plugin as string[];
  const flags = v as Values;
  if (v.chat === true) {
    const model = typeof v.model === 'string' ? v.model : undefined;
    const app = new Application();
    try {
      if (!(model && refs.every((r) => r.endsWith('.delta')))) await app.open(workspaceDir(flags), false);
      return await chatWithPlugins(v, app, refs);
    } finally {
      await app.close();
    }
  }
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
