import { fireEvent, render, screen, waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import ChatExampleView from '../src/components/ChatExample.svelte';
import Playground from '../src/screens/Playground.svelte';
import { ChatStore } from '../src/lib/stores/chat.svelte.js';
import { createStudio, STUDIO_KEY } from '../src/lib/studio.js';
import type { ChatResult, Events } from '../src/lib/types.js';
import { fakeApi, type FakeApi } from './fake-api.js';

const result = (streamId: string, plugins: string | null, base: string | null): ChatResult => ({
  modelId: 1,
  streamId,
  attached: plugins === null ? [] : [{ name: 'bot', task: 'causal-lm', methods: ['lora'], baseMatches: true }],
  template: { name: 'default', source: 'tokenizer_config.json' },
  plugins: plugins === null ? null : { text: plugins, tokens: 3, stopped: 'stop' },
  base: base === null ? null : { text: base, tokens: 5, stopped: 'length' },
  ms: 12,
});

/** A playground.chat that streams `plugins` and `base` a character at a time before answering. */
function streaming(api: FakeApi, plugins: string, base: string) {
  api.handle('playground.chat', async (p: Record<string, unknown>) => {
    const streamId = p.streamId as string;
    const send = (side: 'plugins' | 'base', text: string, stopped?: 'stop' | 'length') => {
      let sofar = '';
      for (const c of text) {
        sofar += c;
        const e: Events['playground.token'] = { streamId, side, delta: c, text: sofar, tokens: sofar.length };
        api.emit('playground.token', sofar === text && stopped ? { ...e, stopped } : e);
      }
    };
    // Another stream's events are not this conversation's.
    api.emit('playground.token', { streamId: 'someone-else', side: 'plugins', delta: 'x', text: 'x', tokens: 1 });
    send('plugins', plugins, 'stop');
    send('base', base, 'length');
    return result(streamId, plugins, base);
  });
}

describe('chat store', () => {
  it('fills both replies from the stream, and goes on from the plugins reply', async () => {
    const api = fakeApi();
    const seen: string[] = [];
    const chat = new ChatStore(api);
    api.on('playground.token', () => seen.push(chat.turns[0]?.plugins?.text ?? ''));
    streaming(api, 'Paris.', 'Lyon?');
    chat.system = 'Be brief.';
    await chat.send('Capital of France?', { modelId: 1, plugins: ['bot'], compareBase: true });
    expect(chat.turns).toHaveLength(1);
    expect(chat.turns[0].plugins).toMatchObject({ text: 'Paris.', done: true, stopped: 'stop' });
    expect(chat.turns[0].base).toMatchObject({ text: 'Lyon?', done: true, stopped: 'length' });
    expect(seen.slice(0, 4)).toEqual(['', 'P', 'Pa', 'Par']); // text arrived as it streamed
    expect(chat.template).toEqual({ name: 'default', source: 'tokenizer_config.json' });

    await chat.send('And Italy?', { modelId: 1, plugins: ['bot'], compareBase: false });
    const sent = api.calls
      .filter((c) => c.method === 'playground.chat')
      .map((c) => c.params as Record<string, unknown>);
    expect(sent[1].messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Capital of France?' },
      { role: 'assistant', content: 'Paris.' },
      { role: 'user', content: 'And Italy?' },
    ]);
    expect(sent[1].compareBase).toBe(false);
    expect(chat.turns[1].base).toBeNull();
    chat.reset();
    expect(chat.turns).toEqual([]);
    chat.dispose();
  });

  it('a refused message is taken back, with the error', async () => {
    const api = fakeApi({
      'playground.chat': { error: { code: 'bad-params', message: 'the model has no chat template; choose chatml' } },
    });
    const chat = new ChatStore(api);
    await chat.send('hi', { modelId: 1, plugins: [], compareBase: true });
    expect(chat.turns).toEqual([]);
    expect(chat.error?.message).toMatch(/chatml/);
    expect(chat.busy).toBe(false);
  });
});

describe('chat screens', () => {
  const models = [
    {
      id: 1,
      name: 'qwen2-chat',
      path: '/m',
      copied: false,
      modelType: 'qwen2',
      architecture: 'Qwen2ForCausalLM',
      fingerprint: 'f',
      params: 28608,
      addedAt: '',
    },
  ];
  const plugins = [
    { name: 'bot', description: '', versions: 1, latest: 1, aliases: {}, method: 'lora', task: 'causal-lm' },
  ];

  it('the playground starts in chat for a causal LM and streams base and plugin replies side by side', async () => {
    const api = fakeApi({ 'models.list': models, 'plugins.list': plugins });
    streaming(api, 'Paris.', 'Lyon?');
    render(Playground, { context: new Map<unknown, unknown>([[STUDIO_KEY, createStudio(api)]]) });
    await screen.findByTestId('chat-panel');
    await fireEvent.click(screen.getByTestId('playground-plugin'));
    await fireEvent.input(screen.getByTestId('chat-input'), { target: { value: 'Capital of France?' } });
    await fireEvent.click(screen.getByTestId('chat-send'));
    await waitFor(() => expect(screen.getByTestId('chat-reply-plugins').textContent).toBe('Paris.'));
    expect(screen.getByTestId('chat-reply-base').textContent).toBe('Lyon?');
    expect(screen.getByTestId('chat-template-used').textContent).toMatch(/default \(tokenizer_config\.json\)/);
    const call = api.calls.find((c) => c.method === 'playground.chat')!.params as Record<string, unknown>;
    expect(call.plugins).toEqual(['bot']);
    // Predict (completion) is a tab away.
    await fireEvent.click(screen.getByTestId('playground-mode-predict'));
    await screen.findByTestId('playground-input');
  });

  it('a classification plugin keeps the playground on predict', async () => {
    const api = fakeApi({ 'models.list': models, 'plugins.list': [{ ...plugins[0], task: 'classification' }] });
    render(Playground, { context: new Map<unknown, unknown>([[STUDIO_KEY, createStudio(api)]]) });
    await screen.findByTestId('playground-input');
    expect(screen.queryByTestId('chat-panel')).toBeNull();
  });

  it("the dataset wizard's example highlights the assistant's parts of the rendered conversation", () => {
    const text = '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n';
    const s = text.indexOf('Hello!');
    render(ChatExampleView, {
      example: {
        messages: [
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello!' },
        ],
        rendered: {
          text,
          assistant: [[s, s + 'Hello!<|im_end|>'.length]],
          template: 'chatml',
          source: 'built-in chatml',
        },
        problem: null,
      },
    });
    expect(screen.getByTestId('chat-rendered').textContent).toBe(text);
    expect(screen.getAllByTestId('chat-assistant-part').map((m) => m.textContent)).toEqual(['Hello!<|im_end|>']);
  });

  it('without a rendering it lists the turns, and says why', () => {
    render(ChatExampleView, {
      example: {
        messages: [
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello!' },
        ],
        rendered: null,
        problem: 'the model has no chat template',
      },
    });
    expect(screen.getByTestId('chat-messages').textContent).toMatch(/userHi.*assistantHello!/);
    expect(screen.getByTestId('chat-example-problem').textContent).toMatch(/no chat template/);
  });
});
