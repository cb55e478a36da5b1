// Chat templates against real transformers: every template of tests/fixtures/chat-templates (Qwen2.5, Qwen3, Llama 3,
// 3.1, 3.2, Mixtral, Mistral Small 3.1, Gemma 2, Gemma 3, Phi-3, 3.5, 4, SmolLM2, TinyLlama and our chatml) renders
// every conversation byte for byte as apply_chat_template does (expected.json, from make_chat_templates.py); a
// rendered chat tokenizes to transformers' ids; exactly the assistant's tokens (its end-of-turn marker included)
// are labelled, checked against transformers' own assistant masks of TRL's {% generation %} templates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BUILT_IN_TEMPLATES,
  ChatTemplate,
  ChatTemplateError,
  assistantSpans,
  chatTemplateFor,
  encodeChat,
  encodeChatPrompt,
  endOfTurnText,
  pythonEscapes,
  stopRuleOf,
  strftime,
} from '../native/models/chat-template.js';
import { TextTokenizer } from '../native/models/tokenizer.js';
import type { ChatMessage } from '../native/contract/types.js';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const dir = join(fixtures, 'chat-templates');
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as {
  transformers: string;
  conversations: Record<string, ChatMessage[]>;
  renders: { template: string; conversation: string; add_generation_prompt: boolean; text?: string; error?: string }[];
  tokens: { model: string; template: string; conversation: string; ids: number[] }[];
  masks: {
    model: string;
    template: string;
    trl: string;
    conversation: string;
    ids: number[];
    assistant_masks: number[];
  }[];
};
// The clock make_chat_templates.py froze (local time, as Python's datetime.now()).
const NOW = new Date(2025, 2, 14, 9, 30);

interface Spec {
  chat_template: string;
  [token: string]: string | null;
}
const spec = (name: string): Spec => JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) as Spec;
const templateNames = readdirSync(dir)
  .filter((f) => f.endsWith('.json') && f !== 'expected.json')
  .map((f) => f.slice(0, -5))
  .sort();

/** The template as a model with this template's special tokens would have it. */
function templateOf(name: string, tokens?: Readonly<Partial<Record<string, string>>>): ChatTemplate {
  const s = spec(name);
  const special: Record<string, string> = {};
  for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) if (typeof s[k] === 'string') special[k] = s[k];
  return new ChatTemplate('default', s.chat_template, name, tokens ?? special);
}
const tokenizer = (model: string): TextTokenizer => TextTokenizer.fromFolder(join(fixtures, 'models', model));

test('rendered strings equal transformers apply_chat_template, byte for byte', () => {
  const differ: string[] = [];
  for (const c of expected.renders) {
    const t = templateOf(c.template);
    let got: string;
    try {
      got = t.render(expected.conversations[c.conversation], {
        addGenerationPrompt: c.add_generation_prompt,
        now: NOW,
      });
    } catch (e) {
      assert.ok(e instanceof ChatTemplateError, String(e));
      got = `refused: ${e.message}`;
    }
    const want = c.text ?? `refused: the chat template refuses this conversation: ${c.error}`;
    if (got !== want)
      differ.push(
        `${c.template} × ${c.conversation} (agp ${c.add_generation_prompt}): ${JSON.stringify(got).slice(0, 200)}`,
      );
  }
  const families = new Set(expected.renders.map((c) => c.template));
  process.stdout.write(
    `chat templates: ${expected.renders.length - differ.length}/${expected.renders.length} renders equal to transformers ${expected.transformers} (${families.size} templates × ${Object.keys(expected.conversations).length} conversations × add_generation_prompt false/true)\n`,
  );
  assert.deepEqual(differ, []);
  assert.equal(families.size, templateNames.length, 'every template fixture has expected renders');
  assert.ok(expected.renders.length >= 200);
});

test('the built-in chatml is the chatml fixture, and is offered when a model has none', () => {
  assert.equal(BUILT_IN_TEMPLATES.chatml, spec('chatml').chat_template);
  const tmp = mkdtempSync(join(tmpdir(), 'ds-chat-'));
  try {
    // The llama fixture ships no template.
    const model = join(fixtures, 'models', 'llama');
    assert.throws(
      () => chatTemplateFor(model, tokenizer('llama')),
      (e: Error) => e instanceof ChatTemplateError && e.code === 'no-template' && /chatml/.test(e.message),
    );
    const t = chatTemplateFor(model, tokenizer('llama'), 'chatml');
    assert.equal(t.source, 'built-in chatml');
    assert.throws(
      () => chatTemplateFor(model, tokenizer('llama'), 'zephyr'),
      /no chat template named "zephyr".*"chatml"/,
    );
    // A template given as text is used as it is.
    assert.equal(
      chatTemplateFor(model, tokenizer('llama'), '{{ messages[0].content }}').render([{ role: 'user', content: 'x' }]),
      'x',
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("a model's template: chat_template.jinja over tokenizer_config.json, named templates as a list or a dict", () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ds-chat-'));
  try {
    const model = join(tmp, 'm');
    cpSync(join(fixtures, 'models', 'qwen2'), model, { recursive: true });
    const configFile = join(model, 'tokenizer_config.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    const write = (c: Record<string, unknown>): void => writeFileSync(configFile, JSON.stringify(c));
    const tok = (): TextTokenizer => TextTokenizer.fromFolder(model);
    const user: ChatMessage[] = [{ role: 'user', content: 'hi' }];

    write({ ...config, chat_template: 'config:{{ messages[0].content }}' });
    assert.equal(chatTemplateFor(model, tok()).render(user), 'config:hi');
    assert.equal(chatTemplateFor(model, tok()).source, 'tokenizer_config.json');

    write({
      ...config,
      chat_template: [
        { name: 'default', template: 'd:{{ messages[0].content }}' },
        { name: 'tool_use', template: 't:{{ messages[0].content }}' },
      ],
    });
    assert.equal(chatTemplateFor(model, tok()).render(user), 'd:hi');
    assert.equal(chatTemplateFor(model, tok(), 'tool_use').render(user), 't:hi');

    write({ ...config, chat_template: { rag: 'r:{{ messages[0].content }}' } });
    assert.throws(() => chatTemplateFor(model, tok()), /several chat templates and none is the default.*"rag"/);
    assert.equal(chatTemplateFor(model, tok(), 'rag').render(user), 'r:hi');

    // Template files win over the config's entry, as transformers reads them.
    writeFileSync(join(model, 'chat_template.jinja'), 'file:{{ messages[0].content }}{{ eos_token }}\n');
    mkdirSync(join(model, 'additional_chat_templates'));
    writeFileSync(join(model, 'additional_chat_templates', 'short.jinja'), 's:{{ messages[0].content }}');
    assert.equal(chatTemplateFor(model, tok()).render(user), 'file:hi<|endoftext|>');
    assert.equal(chatTemplateFor(model, tok()).source, 'chat_template.jinja');
    assert.equal(chatTemplateFor(model, tok(), 'short').render(user), 's:hi');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('a rendered chat tokenizes to the ids transformers gives (no special tokens added twice)', () => {
  for (const c of expected.tokens) {
    const tok = tokenizer(c.model);
    const e = encodeChat(tok, templateOf(c.template, tok.specialTokens), expected.conversations[c.conversation]);
    assert.deepEqual(e.ids, c.ids, `${c.model} × ${c.template} × ${c.conversation}`);
  }
  assert.ok(expected.tokens.length >= 10);
});

/** The labelled stretches of an encoded chat, decoded. */
function labelled(tok: TextTokenizer, ids: number[], mask: ArrayLike<number>): string[] {
  const out: string[] = [];
  let run: number[] = [];
  for (let i = 0; i <= ids.length; i++) {
    if (i < ids.length && mask[i]) run.push(ids[i]);
    else if (run.length) {
      out.push(tok.decode(run));
      run = [];
    }
  }
  return out;
}

test("exactly the assistant's tokens carry labels, its end-of-turn marker included, on every template", () => {
  const conv = expected.conversations['multi-turn'];
  const eot: Record<string, string> = {
    chatml: '<|im_end|>',
    'gemma-2': '<end_of_turn>',
    'gemma-3': '<end_of_turn>',
    'llama-3': '<|eot_id|>',
    'llama-3.1': '<|eot_id|>',
    'llama-3.2': '<|eot_id|>',
    'mistral-small-3.1': '</s>',
    mixtral: '</s>',
    'phi-3': '<|end|>',
    'phi-3.5': '<|end|>',
    'phi-4': '<|im_end|>',
    'qwen2.5': '<|im_end|>',
    qwen3: '<|im_end|>',
    smollm2: '<|im_end|>',
    tinyllama: '</s>',
  };
  assert.deepEqual(Object.keys(eot).sort(), templateNames);
  for (const name of templateNames) {
    const t = templateOf(name);
    const text = t.render(conv);
    const spans = assistantSpans(t, conv).map(([s, e]) => text.slice(s, e));
    // The last turn of a conversation ends as the template ends one: Phi-3 adds eos_token, Qwen3 keeps the (empty)
    // thinking block of the turn it would continue.
    const last = name.startsWith('phi-3')
      ? 'Rome, since 1871.<|end|>\n<|endoftext|>'
      : name === 'qwen3'
        ? '<think>\n\n</think>\n\nRome, since 1871.<|im_end|>'
        : `Rome, since 1871.${eot[name]}`;
    assert.deepEqual(spans, [`Paris.${eot[name]}`, last], name);
  }
  // In tokens, on a byte-level BPE (Qwen2) whose markers are special tokens and a sentencepiece-style BPE (the llama
  // fixture) that reads Llama 3's and Zephyr's markers as plain text.
  for (const [model, name, marker] of [
    ['qwen2', 'qwen2.5', '<|im_end|>'],
    ['qwen2', 'chatml', '<|im_end|>'],
    ['llama', 'llama-3', '<|eot_id|>'],
    ['llama', 'tinyllama', '</s>'],
    ['llama', 'mixtral', '</s>'],
  ]) {
    const tok = tokenizer(model);
    const e = encodeChat(tok, templateOf(name, tok.specialTokens), conv);
    assert.deepEqual(
      labelled(tok, e.ids, e.assistant),
      [`Paris.${marker}`, `Rome, since 1871.${marker}`],
      `${model} × ${name}`,
    );
  }
});

test("the assistant's tokens agree with transformers' assistant masks of TRL's {% generation %} templates", () => {
  for (const m of expected.masks) {
    const tok = tokenizer(m.model);
    const e = encodeChat(tok, templateOf(m.template, tok.specialTokens), expected.conversations[m.conversation]);
    assert.deepEqual(e.ids, m.ids, `${m.trl}: the original and TRL's training variant render the same`);
    const where = `${m.model} × ${m.trl} × ${m.conversation}`;
    for (let i = 0; i < m.ids.length; i++) {
      // Ours ⊆ theirs; TRL also labels the line break after a turn's end marker (and Qwen2.5's after "assistant"),
      // whitespace the template writes and generation never has to.
      if (e.assistant[i]) assert.equal(m.assistant_masks[i], 1, `${where}: token ${i} is ours, not transformers'`);
      else if (m.assistant_masks[i])
        assert.equal(tok.decode([m.ids[i]]).trim(), '', `${where}: token ${i} is transformers' and not whitespace`);
    }
    assert.ok(e.assistant.reduce((a, b) => a + b, 0) > 0);
  }
});

test('too long: cut at the end, or a window around the first reply when the prompt alone is too long', () => {
  const tok = tokenizer('qwen2');
  const t = templateOf('chatml', tok.specialTokens);
  const conv = expected.conversations['system-multi-turn'];
  const full = encodeChat(tok, t, conv);
  const n = full.assistant.indexOf(1) + 3; // into the first reply
  const cut = encodeChat(tok, t, conv, n);
  assert.equal(cut.truncated, true);
  assert.deepEqual(cut.ids, full.ids.slice(0, n));
  assert.deepEqual(Array.from(cut.assistant), Array.from(full.assistant.slice(0, n)));
  // A first prompt longer than the limit: the window keeps the end of the prompt and the start of the reply.
  const long: ChatMessage[] = [
    { role: 'user', content: 'word '.repeat(80) },
    { role: 'assistant', content: 'A short reply.' },
  ];
  const w = encodeChat(tok, t, long, 32);
  assert.equal(w.ids.length, 32);
  assert.ok(w.assistant.includes(1), 'the window holds some of the reply');
  assert.ok(w.assistant.indexOf(1) >= 8, 'and some of the prompt before it');
  assert.equal(encodeChat(tok, t, long).truncated, false);
  // A text that starts with bos keeps it.
  const ltok = tokenizer('llama');
  const mixtral = templateOf('mixtral', ltok.specialTokens);
  assert.equal(encodeChat(ltok, mixtral, long).ids[0], ltok.bosId);
  const lw = encodeChat(ltok, mixtral, long, 24);
  assert.equal(lw.ids.length, 24);
  assert.equal(lw.ids[0], ltok.bosId);
  assert.ok(lw.assistant.includes(1));
});

test('generation prompts and where a reply stops', () => {
  const tok = tokenizer('qwen2');
  const t = templateOf('qwen2.5', tok.specialTokens);
  const prompt = encodeChatPrompt(tok, t, [{ role: 'user', content: 'Hi' }]);
  assert.equal(
    tok.decode(prompt),
    '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
  );
  // <|im_end|> (308) is the end of a turn, <|endoftext|> (306) the tokenizer's eos.
  assert.deepEqual(stopRuleOf(tok, t), { ids: [308, 306], strings: ['<|im_end|>', '<|endoftext|>'] });
  // ChatML on a tokenizer that does not know its markers: the marker is text to look for.
  const ltok = tokenizer('llama');
  assert.deepEqual(stopRuleOf(ltok, templateOf('chatml', ltok.specialTokens)), {
    ids: [2],
    strings: ['<|im_end|>', '</s>'],
  });
  assert.equal(endOfTurnText(templateOf('llama-3')), '<|eot_id|>');
});

test("transformers' environment: strftime_now in the C locale, Python string escapes, raise_exception", () => {
  const d = new Date(2024, 6, 5, 14, 3, 9);
  assert.equal(strftime(d, '%d %b %Y'), '05 Jul 2024');
  assert.equal(strftime(d, '%A %B %-d, %H:%M:%S %p %j %y %% %Q'), 'Friday July 5, 14:03:09 PM 187 24 % %Q');
  assert.equal(strftime(d, '%I %F'), '02 2024-07-05');
  // A backslash before a line break continues the line; an unknown escape keeps its backslash; text outside tags and
  // comments are untouched.
  assert.equal(new ChatTemplate('t', '{{ "a\\\nb\\q\\n" }}\\q{# "\\ #}').render([]), 'ab\\q\n\\q');
  assert.equal(pythonEscapes('x\\\ny {{ "}}" }} {% set a = \'%}\\\n\' %}'), 'x\\\ny {{ "}}" }} {% set a = \'%}\' %}');
  const t = new ChatTemplate('t', "{{ raise_exception('no system here') }}");
  assert.throws(
    () => t.render([]),
    (e: Error) => e instanceof ChatTemplateError && e.code === 'refused' && /no system here/.test(e.message),
  );
  assert.throws(() => new ChatTemplate('t', '{% for %}', 'a file'), /the chat template \(a file\) cannot be read/);
  // tools and documents are defined (as none), as transformers passes them.
  assert.equal(
    new ChatTemplate('t', '{{ tools is defined }}/{{ tools is none }}/{{ range(3) | join(",") }}').render([]),
    'true/true/0,1,2',
  );
});
