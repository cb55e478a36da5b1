// The playground: a base model with plugins attached, side by side with the bare base. One session per model is kept
// open, so switching plugins only changes the feeds; one prediction at a time per session (attaching is its state).
// A chat streams both replies a step at a time, in turn, so that the two columns fill together.
import { randomUUID } from 'node:crypto';
import {
  badParams,
  type ChatMessage,
  type ChatReply,
  type ChatResult,
  type DeviceChoice,
  type Events,
  type PredictResult,
} from '../contract/index.js';
import { existsSync } from 'node:fs';
import { ChatTemplateError, type ChatTemplate } from '../models/chat-template.js';
import { PluginSession, type Prediction } from '../plugins/session.js';
import type { GenerationStep } from '../train/generate.js';
import { PLUGIN_EXTENSION, readPlugin, type Plugin } from '../plugins/format.js';
import type { Workspace } from '../store/workspace.js';
import { taskName } from './tasks.js';

interface OpenSession {
  session: PluginSession;
  device: DeviceChoice;
  lock: Promise<unknown>;
}

export interface PredictRequest {
  modelId: number;
  plugins: string[];
  inputs: string[];
  textPair?: string;
  compareBase: boolean;
  maxNewTokens: number;
  device: DeviceChoice;
}

export interface ChatRequest {
  modelId: number;
  plugins: string[];
  messages: ChatMessage[];
  compareBase: boolean;
  maxNewTokens: number;
  device: DeviceChoice;
  chatTemplate?: string;
  streamId?: string;
}

export type TokenEvent = Events['playground.token'];

/** How often a side's new text is sent while it streams (a batch of tokens per event). */
const FLUSH_MS = 50;

export class Playground {
  private readonly sessions = new Map<number, OpenSession>();

  constructor(private readonly need: () => Workspace) {}

  private async sessionFor(ws: Workspace, modelId: number, device: DeviceChoice): Promise<OpenSession> {
    const have = this.sessions.get(modelId);
    if (have && have.device === device) return have;
    if (have) {
      this.sessions.delete(modelId);
      await have.session.close();
    }
    const session = await PluginSession.open(ws.modelPath(ws.getModel(modelId)), { device });
    const s: OpenSession = { session, device, lock: Promise.resolve() };
    this.sessions.set(modelId, s);
    return s;
  }

  async predict(p: PredictRequest): Promise<PredictResult> {
    const ws = this.need();
    const t0 = performance.now();
    const loaded = p.plugins.map((ref) => ws.loadPlugin(ref));
    const s = await this.sessionFor(ws, p.modelId, p.device);
    const run = async (): Promise<PredictResult> => {
      s.session.detach();
      const attached = loaded.length ? s.session.attach(loaded) : [];
      const inputs = p.inputs.map((text) => (p.textPair !== undefined ? { text, text_pair: p.textPair } : text));
      const withPlugins = loaded.length ? await s.session.predict(inputs, { maxNewTokens: p.maxNewTokens }) : null;
      let base: Prediction[] | null = null;
      let baseMessage: string | null = null;
      if (p.compareBase || !loaded.length) {
        try {
          base = await s.session.predict(inputs, { base: true, maxNewTokens: p.maxNewTokens });
        } catch (e) {
          baseMessage = (e as Error).message;
        }
      }
      return {
        modelId: p.modelId,
        task: taskName(s.session.task),
        attached: attached.map((a) => ({
          name: a.name,
          task: taskName(a.task),
          methods: a.methods.map((m) => m.method),
          baseMatches: a.baseMatches,
        })),
        rows: p.inputs.map((input, i) => ({ input, plugins: withPlugins?.[i] ?? null, base: base?.[i] ?? null })),
        baseMessage,
        ms: performance.now() - t0,
      };
    };
    const r = s.lock.then(run, run);
    s.lock = r.catch(() => undefined);
    return r;
  }

  /**
   * The assistant's next reply to a conversation, with the plugins and from the bare base, streamed to `emit` as they
   * are generated. The template: the one asked for, else the one the plugins were trained with, else the model's own.
   */
  async chat(p: ChatRequest, emit: (e: TokenEvent) => void = () => {}): Promise<ChatResult> {
    const ws = this.need();
    const t0 = performance.now();
    if (p.messages[p.messages.length - 1].role !== 'user')
      throw badParams("the conversation must end with the user's message: the reply is the assistant's", 'messages');
    const loaded = p.plugins.map((ref) => ws.loadPlugin(ref));
    const trained = trainedChatTemplate(ws, loaded);
    const s = await this.sessionFor(ws, p.modelId, p.device);
    const streamId = p.streamId ?? randomUUID();
    const run = async (): Promise<ChatResult> => {
      let template: ChatTemplate;
      try {
        template = s.session.chatTemplate(p.chatTemplate ?? trained);
      } catch (e) {
        if (e instanceof ChatTemplateError) throw badParams(e.message, 'chatTemplate');
        throw e;
      }
      s.session.detach();
      const attached = loaded.length ? s.session.attach(loaded) : [];
      const sides: { side: TokenEvent['side']; steps: AsyncGenerator<GenerationStep> }[] = [];
      const opts = { template, maxNewTokens: p.maxNewTokens };
      if (loaded.length) sides.push({ side: 'plugins', steps: s.session.chat(p.messages, opts) });
      if (p.compareBase || !loaded.length)
        sides.push({ side: 'base', steps: s.session.chat(p.messages, { ...opts, base: true }) });
      const replies = await streamInTurn(sides, streamId, emit);
      return {
        modelId: p.modelId,
        streamId,
        attached: attached.map((a) => ({
          name: a.name,
          task: taskName(a.task),
          methods: a.methods.map((m) => m.method),
          baseMatches: a.baseMatches,
        })),
        template: { name: template.name, source: template.source },
        plugins: replies.plugins ?? null,
        base: replies.base ?? null,
        ms: performance.now() - t0,
      };
    };
    const r = s.lock.then(run, run);
    s.lock = r.catch(() => undefined);
    return r;
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.allSettled(all.map((s) => s.session.close()));
  }
}

/** Plugins named by workspace references ("name@3") or .delta files; the base is theirs unless `model` is given. */
export function resolvePlugins(
  ws: Workspace | null,
  refs: string[],
  model?: string,
): { plugins: (Plugin & { row?: { run_id: string | null } })[]; modelDir: string } {
  const isFile = (r: string): boolean => r.endsWith(PLUGIN_EXTENSION) && existsSync(r);
  const plugins = refs.map((r) => {
    if (isFile(r)) return { ...readPlugin(r), row: undefined };
    if (!ws) throw new Error(`"${r}" is not a .delta file, and no workspace is open to look it up in (--workspace)`);
    return ws.loadPlugin(r);
  });
  if (model) return { plugins, modelDir: model };
  const id = plugins.find((p) => p.row?.model_id != null)?.row?.model_id;
  if (id == null || !ws) throw new Error('the plugins do not record their base model; give it with --model <dir>');
  return { plugins, modelDir: ws.modelPath(ws.getModel(id)) };
}

/** Plugins attached together to a base, on one input; with `compareBase`, the bare base's answer too. */
export async function predictOnce(
  modelDir: string,
  plugins: Plugin[],
  input: { text: string; text_pair?: string },
  opts: { device?: DeviceChoice; force?: boolean; compareBase?: boolean; maxNewTokens?: number } = {},
): Promise<{ attached: string[]; prediction: Prediction; base: Prediction | null; baseMessage: string | null }> {
  const session = await PluginSession.open(modelDir, { device: opts.device ?? 'auto' });
  try {
    session.attach(plugins, { force: opts.force ?? false });
    // A language model continues a prompt; a second text means something only to a pair classifier.
    const lm = session.task === 'causal-lm' || session.task === 'seq2seq';
    if (lm && input.text_pair !== undefined)
      throw new Error(`a ${session.task} plugin takes one text: drop --text-pair`);
    const x = lm ? input.text : input;
    const [prediction] = await session.predict([x], { maxNewTokens: opts.maxNewTokens });
    let base: Prediction | null = null;
    let baseMessage: string | null = null;
    if (opts.compareBase) {
      try {
        [base] = await session.predict([x], { base: true, maxNewTokens: opts.maxNewTokens });
      } catch (e) {
        baseMessage = (e as Error).message;
      }
    }
    return { attached: session.attached.map((a) => a.name), prediction, base, baseMessage };
  } finally {
    await session.close();
  }
}

/** The chat template the plugins' runs trained with (the first that names one), from the workspace's records. */
export function trainedChatTemplate(
  ws: Workspace | null,
  plugins: { row?: { run_id: string | null } }[],
): string | undefined {
  if (!ws) return undefined;
  for (const p of plugins) {
    if (!p.row?.run_id) continue;
    const t = runChatTemplate(ws.getRun(p.row.run_id).config);
    if (t !== undefined) return t;
  }
  return undefined;
}

/** A conversation with plugins attached to their base (the CLI's `predict --chat`): replies streamed as text. */
export interface ChatWithPlugins {
  template: ChatTemplate;
  attached: string[];
  /** The next reply, of the plugins or of the bare base, each piece of text passed to `onText` as it comes. */
  reply(
    messages: ChatMessage[],
    base: boolean,
    maxNewTokens: number,
    onText: (delta: string) => void,
  ): Promise<ChatReply>;
  close(): Promise<void>;
}

export async function openChat(
  modelDir: string,
  plugins: Plugin[],
  opts: { device?: DeviceChoice; force?: boolean; chatTemplate?: string } = {},
): Promise<ChatWithPlugins> {
  const session = await PluginSession.open(modelDir, { device: opts.device ?? 'auto' });
  try {
    session.attach(plugins, { force: opts.force ?? false });
    const template = session.chatTemplate(opts.chatTemplate);
    return {
      template,
      attached: session.attached.map((a) => a.name),
      async reply(messages, base, maxNewTokens, onText) {
        let last: GenerationStep | undefined;
        for await (const step of session.chat(messages, { template, base, maxNewTokens })) {
          if (step.delta) onText(step.delta);
          last = step;
        }
        return { text: last?.text ?? '', tokens: last?.tokens ?? 0, stopped: last?.stopped ?? 'length' };
      },
      close: () => session.close(),
    };
  } catch (e) {
    await session.close();
    throw e;
  }
}

/** The chat template a run's recorded config names (its TrainConfig JSON), if any. */
export function runChatTemplate(config: string): string | undefined {
  try {
    const c = JSON.parse(config) as { chatTemplate?: unknown };
    return typeof c.chatTemplate === 'string' ? c.chatTemplate : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Advances each side a step in turn until all have stopped, sending each side's new text at most every FLUSH_MS (and
 * its last step at once). Returns each side's reply.
 */
export async function streamInTurn(
  sides: { side: TokenEvent['side']; steps: AsyncGenerator<GenerationStep> }[],
  streamId: string,
  emit: (e: TokenEvent) => void,
): Promise<Partial<Record<TokenEvent['side'], ChatReply>>> {
  const out: Partial<Record<TokenEvent['side'], ChatReply>> = {};
  const pending = new Map(sides.map((x) => [x.side, { delta: '', at: performance.now() }]));
  let live = sides;
  try {
    while (live.length) {
      const next: typeof live = [];
      for (const x of live) {
        const r = await x.steps.next();
        if (r.done) continue;
        const step = r.value;
        const p = pending.get(x.side)!;
        p.delta += step.delta;
        const now = performance.now();
        if (step.stopped || now - p.at >= FLUSH_MS) {
          emit({
            streamId,
            side: x.side,
            delta: p.delta,
            text: step.text,
            tokens: step.tokens,
            ...(step.stopped ? { stopped: step.stopped } : {}),
          });
          p.delta = '';
          p.at = now;
        }
        if (step.stopped) out[x.side] = { text: step.text, tokens: step.tokens, stopped: step.stopped };
        else next.push(x);
      }
      live = next;
    }
  } finally {
    // A side that failed leaves the others' sessions free.
    await Promise.all(live.map((x) => x.steps.return(undefined)));
  }
  return out;
}
