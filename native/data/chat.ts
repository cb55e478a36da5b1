// Conversations in: OpenAI-style `messages` ({role, content}), ShareGPT's `conversations` ({from, value}, human/gpt),
// and alpaca's instruction / input / output, all normalised to one row shape, {messages: [{role, content}, …]}:
// an optional system message first, then user and assistant turns in alternation, ending with the assistant's (the
// turns training learns). Anything else is an error naming the file, the line or item, the message and what was
// expected.
import type { RawRow } from './readers.js';
import { DatasetError, type ChatMessage, type ColumnMapping, type Example } from './types.js';

/** Speakers as the formats name them, in the user's words: ShareGPT's human and gpt are the user and the assistant. */
const SPEAKERS: Record<string, ChatMessage['role']> = {
  system: 'system',
  user: 'user',
  human: 'user',
  assistant: 'assistant',
  gpt: 'assistant',
  chatgpt: 'assistant',
  model: 'assistant',
};
/** Roles a conversation may name that chat training does not take yet (tool calling). */
const TOOL_ROLES = new Set([
  'tool',
  'function',
  'function_call',
  'ipython',
  'observation',
  'tool_call',
  'tool_response',
]);

interface Where {
  file: string;
  row: RawRow;
  column: string;
}

const at = (w: Where): string => `${w.file}: ${w.row.line !== undefined ? `line ${w.row.line}` : `item ${w.row.item}`}`;

/** A problem of the row at `w`, of its `n`th message when given. */
function fail(w: Where, n: number | undefined, text: string): never {
  throw new DatasetError(
    'bad-conversation',
    `${at(w)}, column '${w.column}'${n !== undefined ? `, message ${n}` : ''}: ${text}`,
    { file: w.file, line: w.row.line, item: w.row.item, column: w.column, messageIndex: n },
  );
}

const describe = (v: unknown): string =>
  v === null
    ? 'null'
    : Array.isArray(v)
      ? 'a list'
      : typeof v === 'object'
        ? 'an object'
        : `${typeof v} ${JSON.stringify(v)}`;

/** A value of a messages column: a list (JSON, JSONL), or the JSON text of one (a CSV cell). */
function messageList(raw: unknown, w: Where): unknown[] {
  let value = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch {
      fail(
        w,
        undefined,
        'expected a list of messages such as [{"role": "user", "content": "…"}, …] (here: text that is not JSON)',
      );
    }
  }
  if (!Array.isArray(value))
    fail(
      w,
      undefined,
      `expected a list of messages such as [{"role": "user", "content": "…"}, …], got ${describe(value)}`,
    );
  if (value.length === 0) fail(w, undefined, 'the conversation is empty (an empty list of messages)');
  return value;
}

/** One message in either spelling, as {role, content}. */
function messageOf(raw: unknown, n: number, w: Where): ChatMessage {
  const where = n;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    fail(
      w,
      where,
      `expected an object {"role": …, "content": …} (or ShareGPT's {"from": …, "value": …}), got ${describe(raw)}`,
    );
  const m = raw as Record<string, unknown>;
  const openai = 'role' in m || 'content' in m;
  const [roleKey, textKey] = openai ? ['role', 'content'] : ['from', 'value'];
  if (!openai && !('from' in m) && !('value' in m))
    fail(
      w,
      where,
      `expected "role" and "content" (or ShareGPT's "from" and "value"); its keys: ${Object.keys(m).join(', ') || 'none'}`,
    );
  const speaker = m[roleKey];
  if (typeof speaker !== 'string')
    fail(w, where, `"${roleKey}" must be a name such as "user", got ${describe(speaker)}`);
  const role = SPEAKERS[speaker.trim().toLowerCase()];
  if (!role) {
    if (TOOL_ROLES.has(speaker.trim().toLowerCase()))
      fail(w, where, `"${speaker}" messages (tool calling) are not supported yet: remove them, or the conversation`);
    fail(
      w,
      where,
      `unknown role "${speaker}" (expected system, user or assistant${openai ? '' : "; ShareGPT's human and gpt are read as user and assistant"})`,
    );
  }
  const content = m[textKey];
  if (content === undefined || content === null) fail(w, where, `the ${role} message has no "${textKey}"`);
  if (typeof content !== 'string')
    fail(
      w,
      where,
      `"${textKey}" must be text, got ${describe(content)}${Array.isArray(content) ? ' (content parts such as images are not supported: give the text as one string)' : ''}`,
    );
  if (content.trim() === '') fail(w, where, `the ${role} message is empty`);
  return { role, content };
}

/**
 * The conversation's shape: a system message only first, then user and assistant in turn from a user, and the last
 * message the assistant's (what is learnt). Chat templates of Mistral and Gemma refuse anything else; so does this,
 * saying where.
 */
export function checkConversation(messages: ChatMessage[], w: Where): void {
  let expect: ChatMessage['role'] = 'user';
  messages.forEach((m, i) => {
    const where = i + 1;
    if (m.role === 'system') {
      if (i > 0) fail(w, where, 'a system message can only be the first message');
      return;
    }
    if (m.role !== expect)
      fail(
        w,
        where,
        i === 0 || (i === 1 && messages[0].role === 'system')
          ? `a conversation starts with the user (after an optional system message), not the ${m.role}`
          : `two ${m.role} messages in a row: user and assistant messages must alternate`,
      );
    expect = m.role === 'user' ? 'assistant' : 'user';
  });
  const last = messages[messages.length - 1];
  if (last.role !== 'assistant')
    fail(
      w,
      undefined,
      `the conversation ends with ${last.role === 'user' ? 'a user' : 'a system'} message: it must end with the assistant's reply, which is what training learns`,
    );
}

/** The text of a column for alpaca's fields: a string (missing, null or blank is '' for the optional ones). */
function textOf(row: RawRow, col: string, required: boolean, w: Where, what: string): string {
  const raw = row.get(col);
  if (raw === undefined || raw === null || (typeof raw === 'string' && raw.trim() === '')) {
    if (!required) return '';
    fail({ ...w, column: col }, undefined, `empty value (every row needs ${what})`);
  }
  if (typeof raw !== 'string' && typeof raw !== 'number')
    fail({ ...w, column: col }, undefined, `expected text, got ${describe(raw)}`);
  return String(raw);
}

/**
 * A raw row of a chat dataset as {messages}: the conversation of the `messages` column, or alpaca's instruction (with
 * its input after a blank line, when there is one) as the user's message and output as the assistant's; a `system`
 * column, when mapped, is the first message.
 */
export function normaliseChat(mapping: ColumnMapping, file: string, row: RawRow): Example {
  let messages: ChatMessage[];
  const base: Where = { file, row, column: mapping.messages ?? mapping.instruction ?? '' };
  if (mapping.messages !== undefined) {
    const raw = row.get(mapping.messages);
    if (raw === undefined || raw === null) fail(base, undefined, 'missing value (every row needs a conversation)');
    messages = messageList(raw, base).map((m, i) => messageOf(m, i + 1, base));
  } else {
    const instruction = textOf(row, mapping.instruction as string, true, base, 'an instruction');
    const input = mapping.input !== undefined ? textOf(row, mapping.input, false, base, '') : '';
    const output = textOf(row, mapping.output as string, true, base, 'an output');
    messages = [
      { role: 'user', content: input.trim() ? `${instruction}\n\n${input}` : instruction },
      { role: 'assistant', content: output },
    ];
  }
  if (mapping.system !== undefined) {
    const system = textOf(row, mapping.system, false, { ...base, column: mapping.system }, '');
    if (system.trim()) {
      if (messages[0].role === 'system')
        fail(
          { ...base, column: mapping.system },
          undefined,
          `the row has a system column and its conversation starts with a system message: map one of them`,
        );
      messages = [{ role: 'system', content: system }, ...messages];
    }
  }
  checkConversation(messages, base);
  return { messages };
}
