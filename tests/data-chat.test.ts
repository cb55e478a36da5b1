// Chat and instruction data: OpenAI-style messages, ShareGPT conversations and alpaca rows (JSONL, JSON, CSV) become
// one normalised row shape, {messages}; every malformed conversation is an error naming the file, line or item,
// message and what was expected; the preview guesses a chat and shows its first conversation as a model's chat
// template writes it; token statistics and the token cache read a chat with its template (the assistant's tokens
// marked).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DatasetError,
  importDataset,
  loadSplit,
  tokenLengthStats,
  tokenizeCached,
  type ImportOptions,
} from '../native/data/index.js';
import { guessTask, previewFile } from '../native/app/datasets.js';
import { chatTemplateFor } from '../native/models/chat-template.js';
import { TextTokenizer } from '../native/models/tokenizer.js';

const QWEN = fileURLToPath(new URL('./fixtures/models/qwen2', import.meta.url));
const NOSPLIT = { validation: 0, test: 0, seed: 0 };
const chat = (extra: Partial<ImportOptions> = {}): ImportOptions => ({ task: 'chat', split: NOSPLIT, ...extra });

function tmpDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'ds-chat-data-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
const put = (dir: string, name: string, content: string): string => {
  writeFileSync(join(dir, name), content);
  return join(dir, name);
};
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

const CONV = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Capital of France?' },
  { role: 'assistant', content: 'Paris.' },
  { role: 'user', content: 'And Italy?' },
  { role: 'assistant', content: 'Rome.' },
];

test('OpenAI messages, ShareGPT conversations and alpaca rows become the same normalised conversations', async (t) => {
  const dir = tmpDir(t);
  const openai = await importDataset(
    put(dir, 'openai.jsonl', jsonl([{ messages: CONV, id: 7 }, { messages: CONV.slice(1, 3) }])),
    join(dir, 'a'),
    chat(),
  );
  assert.equal(openai.task, 'chat');
  assert.deepEqual(openai.columns, { messages: 'messages' });
  assert.deepEqual(loadSplit(join(dir, 'a'), 'train'), [{ messages: CONV }, { messages: CONV.slice(1, 3) }]);
  assert.deepEqual(openai.stats.turns, { min: 1, max: 2, mean: 1.5, withSystem: 1 });
  assert.equal(
    openai.stats.fields.messages?.maxChars,
    CONV.reduce((a, m) => a + m.content.length, 0),
  );

  // ShareGPT: from/value, human/gpt/system, as a JSON array; the same conversations give the same version.
  const sharegpt = CONV.map((m) => ({
    from: { system: 'system', user: 'human', assistant: 'gpt' }[m.role],
    value: m.content,
  }));
  const sg = await importDataset(
    put(dir, 'sharegpt.json', JSON.stringify([{ conversations: sharegpt }, { conversations: sharegpt.slice(1, 3) }])),
    join(dir, 'b'),
    chat(),
  );
  assert.deepEqual(sg.columns, { messages: 'conversations' });
  assert.equal(sg.digest, openai.digest);

  // Alpaca: the instruction (and its input after a blank line) is the user's turn, the output the assistant's.
  const alpaca = [
    { instruction: 'Translate to French.', input: 'Good morning', output: 'Bonjour' },
    { instruction: 'Name a colour.', input: '', output: 'Blue' },
  ];
  const al = await importDataset(put(dir, 'alpaca.json', JSON.stringify(alpaca)), join(dir, 'c'), chat());
  assert.deepEqual(al.columns, { instruction: 'instruction', input: 'input', output: 'output' });
  assert.deepEqual(loadSplit(join(dir, 'c'), 'train'), [
    {
      messages: [
        { role: 'user', content: 'Translate to French.\n\nGood morning' },
        { role: 'assistant', content: 'Bonjour' },
      ],
    },
    {
      messages: [
        { role: 'user', content: 'Name a colour.' },
        { role: 'assistant', content: 'Blue' },
      ],
    },
  ]);
  // The same rows as CSV, with a system prompt column: the same conversations, a system message first.
  const csv =
    'instruction,input,output,system\n"Translate to French.",Good morning,Bonjour,Be kind.\nName a colour.,,Blue,\n';
  await importDataset(put(dir, 'alpaca.csv', csv), join(dir, 'd'), chat());
  const rows = loadSplit(join(dir, 'd'), 'train');
  assert.deepEqual(rows[0].messages?.[0], { role: 'system', content: 'Be kind.' });
  assert.deepEqual(rows[0].messages?.slice(1), loadSplit(join(dir, 'c'), 'train')[0].messages);
  assert.deepEqual(rows[1], loadSplit(join(dir, 'c'), 'train')[1]);
  // Columns by other names, mapped by hand; a CSV cell may hold the JSON of a conversation.
  const cells = `dialog,x\n"${JSON.stringify(CONV.slice(1, 3)).replaceAll('"', '""')}",1\n`;
  const mapped = await importDataset(
    put(dir, 'cells.csv', cells),
    join(dir, 'e'),
    chat({ columns: { messages: 'dialog' } }),
  );
  assert.equal(mapped.rows.train, 1);
  assert.deepEqual(loadSplit(join(dir, 'e'), 'train')[0].messages, CONV.slice(1, 3));
});

/** The error of importing `rows` (JSONL) as a chat. */
async function problem(t: { after: (fn: () => void) => void }, rows: unknown[], extra: Partial<ImportOptions> = {}) {
  const dir = tmpDir(t);
  try {
    await importDataset(put(dir, 'bad.jsonl', jsonl(rows)), join(dir, 'out'), chat(extra));
  } catch (e) {
    assert.ok(e instanceof DatasetError, String(e));
    return e;
  }
  assert.fail('the import should have failed');
}

test('a malformed conversation is an error naming the file, the line, the message and what was expected', async (t) => {
  const good = { messages: CONV.slice(1, 3) };
  const cases: [unknown[], RegExp, number | undefined][] = [
    [
      [
        good,
        {
          messages: [
            { role: 'user', content: 'Hi' },
            { role: 'bot', content: 'Hello' },
          ],
        },
      ],
      /line 2, column 'messages', message 2: unknown role "bot" \(expected system, user or assistant/,
      2,
    ],
    [
      [
        {
          messages: [
            { role: 'user', content: '  ' },
            { role: 'assistant', content: 'x' },
          ],
        },
      ],
      /line 1, column 'messages', message 1: the user message is empty/,
      1,
    ],
    [
      [{ messages: [{ role: 'user', content: 'Hi' }] }],
      /line 1, column 'messages': the conversation ends with a user message: it must end with the assistant's reply/,
      undefined,
    ],
    [
      [
        {
          messages: [
            { role: 'user', content: 'Hi' },
            { role: 'assistant', content: 'x' },
            { role: 'system', content: 's' },
            { role: 'user', content: 'u' },
            { role: 'assistant', content: 'y' },
          ],
        },
      ],
      /message 3: a system message can only be the first message/,
      3,
    ],
    [
      [
        {
          messages: [
            { role: 'user', content: 'a' },
            { role: 'user', content: 'b' },
            { role: 'assistant', content: 'c' },
          ],
        },
      ],
      /message 2: two user messages in a row: user and assistant messages must alternate/,
      2,
    ],
    [
      [
        {
          messages: [
            { role: 'assistant', content: 'Hello!' },
            { role: 'user', content: 'b' },
            { role: 'assistant', content: 'c' },
          ],
        },
      ],
      /message 1: a conversation starts with the user/,
      1,
    ],
    [
      [
        {
          messages: [
            { role: 'user', content: 'a' },
            { role: 'tool', content: '{}' },
            { role: 'assistant', content: 'c' },
          ],
        },
      ],
      /message 2: "tool" messages \(tool calling\) are not supported yet/,
      2,
    ],
    [
      [
        {
          messages: [
            { role: 'user', content: [{ type: 'text', text: 'a' }] },
            { role: 'assistant', content: 'c' },
          ],
        },
      ],
      /message 1: "content" must be text, got a list \(content parts such as images are not supported/,
      1,
    ],
    [
      [{ messages: 'hello' }],
      /line 1, column 'messages': expected a list of messages .* \(here: text that is not JSON\)/,
      undefined,
    ],
    [[{ messages: [] }], /the conversation is empty/, undefined],
    [
      [{ conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt' }] }],
      /column 'conversations', message 2: the assistant message has no "value"/,
      2,
    ],
    [
      [{ messages: [{ text: 'Hi' }] }],
      /message 1: expected "role" and "content" \(or ShareGPT's "from" and "value"\); its keys: text/,
      1,
    ],
    [
      [{ instruction: 'Say hi', output: '' }],
      /line 1, column 'output': empty value \(every row needs an output\)/,
      undefined,
    ],
    [
      [{ system: 'S', messages: [{ role: 'system', content: 'T' }, ...CONV.slice(1, 3)] }],
      /column 'system': the row has a system column and its conversation starts with a system message/,
      undefined,
    ],
  ];
  for (const [rows, want, index] of cases) {
    const e = await problem(t, rows);
    assert.equal(e.code, 'bad-conversation', e.message);
    assert.match(e.message, /bad\.jsonl: line \d/);
    assert.match(e.message, want);
    assert.equal(e.messageIndex, index, e.message);
  }
  // No columns for a chat at all: both shapes named.
  const e = await problem(t, [{ question: 'q', answer: 'a' }]);
  assert.equal(e.code, 'missing-column');
  assert.match(
    e.message,
    /no columns for the chat task: it needs 'messages' or 'instruction', 'output'.*--messages C, or --instruction C --output C/,
  );
  // Mapping both shapes is refused.
  const both = await problem(t, [{ messages: CONV.slice(1, 3), instruction: 'i', output: 'o' }], {
    columns: { messages: 'messages', instruction: 'instruction' },
  });
  assert.match(both.message, /map either messages or instruction \+ output, not both/);
});

test('the preview guesses a chat and shows its first conversation as the model writes it, assistant parts marked', async (t) => {
  const dir = tmpDir(t);
  assert.deepEqual(guessTask(['messages', 'id'], [{ messages: JSON.stringify(CONV), id: '1' }], 'f'), {
    task: 'chat',
    columns: { messages: 'messages' },
  });
  assert.deepEqual(
    guessTask(
      ['conversations'],
      [{ conversations: '[{"from":"human","value":"hi"},{"from":"gpt","value":"yo"}]' }],
      'f',
    )?.task,
    'chat',
  );
  assert.deepEqual(guessTask(['instruction', 'input', 'output'], [{ instruction: 'a', input: '', output: 'b' }], 'f'), {
    task: 'chat',
    columns: { instruction: 'instruction', input: 'input', output: 'output' },
  });
  // A column of other JSON lists is not a conversation; prompt/completion stays a causal LM.
  assert.equal(guessTask(['tags', 'text'], [{ tags: '[1,2]', text: 'x' }], 'f')?.task, 'causal-lm');
  assert.equal(guessTask(['prompt', 'completion'], [{ prompt: 'a', completion: 'b' }], 'f')?.task, 'causal-lm');

  const file = put(dir, 'chat.jsonl', jsonl([{ messages: CONV }]));
  const plain = await previewFile(file, 5);
  assert.equal(plain.guess?.task, 'chat');
  assert.deepEqual(plain.example, { messages: CONV, rendered: null, problem: null });

  const template = () => chatTemplateFor(QWEN, TextTokenizer.fromFolder(QWEN), 'chatml');
  const shown = await previewFile(file, 5, { template });
  const r = shown.example?.rendered;
  assert.ok(r);
  assert.equal(r.template, 'chatml');
  assert.equal(r.text.slice(0, 33), '<|im_start|>system\nBe brief.<|im_');
  assert.deepEqual(
    r.assistant.map(([s, e]) => r.text.slice(s, e)),
    ['Paris.<|im_end|>', 'Rome.<|im_end|>'],
  );
  // The model's template is missing: the conversation is shown, and why it is not rendered.
  const none = await previewFile(file, 5, {
    template: () => chatTemplateFor(QWEN, TextTokenizer.fromFolder(QWEN)),
  });
  assert.deepEqual(none.example?.messages, CONV);
  assert.match(none.example?.problem ?? '', /has no chat template.*chatml/);
  // A bad first row is shown as the problem it is.
  const bad = await previewFile(put(dir, 'bad.jsonl', jsonl([{ messages: [{ role: 'user', content: 'x' }] }])), 5, {
    task: 'chat',
  });
  assert.match(bad.example?.problem ?? '', /ends with a user message/);
});

test('token statistics and the token cache read a chat with its chat template, the assistant tokens marked', async (t) => {
  const dir = tmpDir(t);
  await importDataset(
    put(dir, 'c.jsonl', jsonl([{ messages: CONV }, { messages: CONV.slice(1, 3) }])),
    join(dir, 'ds'),
    chat(),
  );
  const tok = TextTokenizer.fromFolder(QWEN);
  const chatml = chatTemplateFor(QWEN, tok, 'chatml');
  assert.throws(() => tokenLengthStats(join(dir, 'ds'), tok), /tokenized with a chat template/);
  const stats = tokenLengthStats(join(dir, 'ds'), tok, chatml);
  assert.equal(stats.count, 2);
  const cached = tokenizeCached(join(dir, 'ds'), tok, 64, chatml);
  const train = cached.splits.train;
  assert.ok(train.assistantMask);
  assert.equal(train.assistantMask.length, train.ids.length);
  const row = (i: number) => Array.from(train.ids.subarray(train.offsets[i], train.offsets[i + 1]));
  const mask = (i: number) => Array.from(train.assistantMask!.subarray(train.offsets[i], train.offsets[i + 1]));
  const said = row(1).filter((_, k) => mask(1)[k]);
  assert.equal(tok.decode(said), 'Paris.<|im_end|>');
  assert.equal(tokenizeCached(join(dir, 'ds'), tok, 64, chatml).fromCache, true);
  // Another template is another cache entry.
  const other = chatTemplateFor(QWEN, tok, '{% for m in messages %}{{ m.content }}{% endfor %}');
  const again = tokenizeCached(join(dir, 'ds'), tok, 64, other);
  assert.equal(again.fromCache, false);
  assert.notEqual(again.key, cached.key);
});
