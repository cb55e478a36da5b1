// The chat playground's conversation: the turns so far, each with the base's and the plugins' replies, filled in as
// playground.token events stream them; the conversation goes on from the plugins' reply (the base's when no plugin
// is chosen).
import type { Api, Unsubscribe } from '../api.js';
import { toApiError } from '../api.js';
import type { ApiError, ChatMessage, ChatResult, Events } from '../types.js';

export interface Reply {
  text: string;
  tokens: number;
  done: boolean;
  stopped?: 'stop' | 'length';
}

export interface ChatTurn {
  user: string;
  plugins: Reply | null;
  base: Reply | null;
}

export interface ChatSettings {
  modelId: number;
  plugins: string[];
  compareBase: boolean;
  maxNewTokens?: number;
  /** A template by name; the engine's default (the plugins', else the model's) when absent. */
  chatTemplate?: string;
}

let streams = 0;

export class ChatStore {
  system = $state('');
  turns = $state<ChatTurn[]>([]);
  busy = $state(false);
  error = $state<ApiError | null>(null);
  template = $state.raw<ChatResult['template'] | null>(null);
  ms = $state<number | null>(null);
  private streamId: string | null = null;
  private readonly off: Unsubscribe;

  constructor(private readonly api: Api) {
    this.off = api.on('playground.token', (e) => this.onToken(e));
  }

  /** The conversation as the engine reads it: the system prompt, then each exchange, then `next`. */
  messages(next: string): ChatMessage[] {
    const out: ChatMessage[] = this.system.trim() ? [{ role: 'system', content: this.system.trim() }] : [];
    for (const t of this.turns) {
      const reply = t.plugins ?? t.base;
      out.push({ role: 'user', content: t.user });
      if (reply?.done && reply.text.trim()) out.push({ role: 'assistant', content: reply.text.trim() });
    }
    out.push({ role: 'user', content: next });
    return out;
  }

  /** Sends the user's message; the replies fill in as they stream. */
  async send(text: string, s: ChatSettings): Promise<void> {
    const user = text.trim();
    if (!user || this.busy) return;
    const messages = this.messages(user);
    const empty = (): Reply => ({ text: '', tokens: 0, done: false });
    this.turns.push({
      user,
      plugins: s.plugins.length ? empty() : null,
      base: s.compareBase || !s.plugins.length ? empty() : null,
    });
    const turn = this.turns[this.turns.length - 1];
    const streamId = `chat${++streams}${Math.random().toString(36).slice(2, 10)}`;
    this.streamId = streamId;
    this.busy = true;
    this.error = null;
    try {
      const r = await this.api.call('playground.chat', {
        modelId: s.modelId,
        plugins: s.plugins,
        messages,
        compareBase: s.compareBase,
        ...(s.maxNewTokens ? { maxNewTokens: s.maxNewTokens } : {}),
        ...(s.chatTemplate ? { chatTemplate: s.chatTemplate } : {}),
        streamId,
      });
      // The result is the reply whatever events were missed.
      for (const side of ['plugins', 'base'] as const) {
        const got = r[side];
        if (got && turn[side]) Object.assign(turn[side], { ...got, done: true });
      }
      this.template = r.template;
      this.ms = r.ms;
    } catch (e) {
      this.error = toApiError(e);
      this.turns.pop(); // the message can be sent again
    } finally {
      this.busy = false;
      this.streamId = null;
    }
  }

  private onToken(e: Events['playground.token']): void {
    if (e.streamId !== this.streamId) return;
    const reply = this.turns[this.turns.length - 1]?.[e.side];
    if (!reply) return;
    reply.text = e.text;
    reply.tokens = e.tokens;
    if (e.stopped) Object.assign(reply, { done: true, stopped: e.stopped });
  }

  reset(): void {
    if (this.busy) return;
    this.turns = [];
    this.error = null;
    this.template = null;
    this.ms = null;
  }

  dispose(): void {
    this.off();
  }
}
