// The playground: a base model with plugins attached, side by side with the bare base. One session per model is kept
// open, so switching plugins only changes the feeds; one prediction at a time per session (attaching is its state).
import type { PredictResult } from '../contract/index.js';
import type { DeviceChoice } from '../contract/index.js';
import { existsSync } from 'node:fs';
import { PluginSession, type Prediction } from '../plugins/session.js';
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
): { plugins: Plugin[]; modelDir: string } {
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
