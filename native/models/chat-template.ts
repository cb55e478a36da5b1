// Chat templates: a model's own (chat_template.jinja, additional_chat_templates/*.jinja, or tokenizer_config.json's
// `chat_template`, as transformers finds them) or a named default, rendered with @huggingface/jinja in the environment
// transformers renders them in (`apply_chat_template`): trim_blocks and lstrip_blocks, `raise_exception`,
// `strftime_now`, a `tojson` that keeps non-ASCII, the tokenizer's special tokens (bos_token, eos_token, …) as
// variables, `tools` and `documents` defined as none, and `add_generation_prompt`.
//
// A rendered chat is tokenized without adding special tokens (the template wrote them), as transformers does. Which
// tokens are the assistant's: each assistant turn is located in the rendered text by rendering prefixes of the
// conversation — the prompt of turn i is the first i messages with the generation prompt, the turn ends where
// the first i + 1 messages stop agreeing with the whole conversation (its end-of-turn marker included, trailing
// whitespace not) — and the character offsets become token offsets by tokenizing the text up to each offset.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import type { ChatMessage } from '../contract/types.js';
import { readJsonFile } from '../onnx/safetensors.js';
import type { TextTokenizer } from './tokenizer.js';

export type { ChatMessage } from '../contract/types.js';

/**
 * ChatML, the format of Qwen, SmolLM and many fine-tunes: `<|im_start|>role\ncontent<|im_end|>\n` per message. Offered
 * for models that ship no template (their tokenizer may not know its markers as single tokens: they are then learnt
 * as text).
 */
const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Templates built in, by name. */
export const BUILT_IN_TEMPLATES: Readonly<Record<string, string>> = { chatml: CHATML };

/** The template could not be found, chosen or rendered; `code` says which. */
export class ChatTemplateError extends Error {
  constructor(
    readonly code: 'no-template' | 'unknown-template' | 'refused' | 'render-failed' | 'turn-not-found',
    message: string,
  ) {
    super(message);
    this.name = 'ChatTemplateError';
  }
}

/** The templates a model folder ships, by name ('default' for the one transformers uses), and where they came from. */
export function modelChatTemplates(dir: string): { templates: Record<string, string>; source: string } {
  const templates: Record<string, string> = {};
  // Template files take priority over the tokenizer config's entry (transformers ≥ 4.43 saves them so).
  const file = join(dir, 'chat_template.jinja');
  if (isFile(file)) templates.default = readFileSync(file, 'utf8');
  const extra = join(dir, 'additional_chat_templates');
  if (existsSync(extra) && statSync(extra).isDirectory())
    for (const name of readdirSync(extra).sort())
      if (name.endsWith('.jinja') && isFile(join(extra, name)))
        templates[name.slice(0, -'.jinja'.length)] = readFileSync(join(extra, name), 'utf8');
  if (Object.keys(templates).length) return { templates, source: 'chat_template.jinja' };
  const configFile = join(dir, 'tokenizer_config.json');
  if (!isFile(configFile)) return { templates, source: 'none' };
  const raw = (readJsonFile(configFile) as Record<string, unknown> | null)?.chat_template;
  if (typeof raw === 'string') templates.default = raw;
  else if (Array.isArray(raw)) {
    // Several named templates are saved as [{name, template}, …].
    for (const t of raw as { name?: unknown; template?: unknown }[])
      if (typeof t?.name === 'string' && typeof t.template === 'string') templates[t.name] = t.template;
  } else if (raw && typeof raw === 'object') {
    for (const [name, t] of Object.entries(raw)) if (typeof t === 'string') templates[name] = t;
  }
  return { templates, source: 'tokenizer_config.json' };
}

function isFile(f: string): boolean {
  return existsSync(f) && statSync(f).isFile();
}

/** How a user names a template in messages: the built-in names, then the model's own. */
function choices(own: Record<string, string>): string {
  const names = [...Object.keys(BUILT_IN_TEMPLATES), ...Object.keys(own).filter((n) => n !== 'default')];
  return names.map((n) => `"${n}"`).join(', ');
}

/** Is this text a template itself rather than a template's name? */
export const isTemplateText = (s: string): boolean => s.includes('{{') || s.includes('{%');

/**
 * The chat template to use for a model folder: `choice` names one of the model's templates or a built-in one (or is a
 * template's text); without a choice, the model's default template. A model with none is refused, offering the named
 * defaults.
 */
export function chatTemplateFor(dir: string, tok: Pick<TextTokenizer, 'specialTokens'>, choice?: string): ChatTemplate {
  const { templates, source } = modelChatTemplates(dir);
  if (choice !== undefined && choice !== '') {
    if (isTemplateText(choice)) return new ChatTemplate('custom', choice, 'the template given', tok.specialTokens);
    if (templates[choice] !== undefined)
      return new ChatTemplate(choice, templates[choice], `${source} (${choice})`, tok.specialTokens);
    if (BUILT_IN_TEMPLATES[choice] !== undefined)
      return new ChatTemplate(choice, BUILT_IN_TEMPLATES[choice], `built-in ${choice}`, tok.specialTokens);
    throw new ChatTemplateError(
      'unknown-template',
      `no chat template named "${choice}" (${Object.keys(templates).length ? 'this model has' : 'choose'} ${choices(templates)})`,
    );
  }
  if (templates.default !== undefined) return new ChatTemplate('default', templates.default, source, tok.specialTokens);
  const named = Object.keys(templates);
  if (named.length)
    throw new ChatTemplateError(
      'unknown-template',
      `${dir}: the model has several chat templates and none is the default: choose one by name (${choices(templates)})`,
    );
  throw new ChatTemplateError(
    'no-template',
    `${dir}: the model has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja), so it ` +
      `does not say how a conversation is written for it. Choose a named one: chatml (<|im_start|>role … <|im_end|>; ` +
      `the CLI: --chat-template chatml), or give the model folder its chat template`,
  );
}

export interface RenderOptions {
  /** Open an assistant turn at the end (what generation continues from). */
  addGenerationPrompt?: boolean;
  /** The clock of `strftime_now` (Llama 3.x writes today's date into its system prompt). */
  now?: Date;
  /** Further template variables (transformers' template kwargs, e.g. `date_string`). */
  variables?: Record<string, unknown>;
}

/** A chat template ready to render conversations with a tokenizer's special tokens. */
export class ChatTemplate {
  private readonly compiled: Template;

  constructor(
    /** 'default' (the model's), a named template of the model, a built-in name, or 'custom'. */
    readonly name: string,
    readonly text: string,
    /** Where it came from, for messages. */
    readonly source: string = name,
    readonly specialTokens: Readonly<Partial<Record<string, string>>> = {},
  ) {
    try {
      this.compiled = new Template(pythonEscapes(text));
    } catch (e) {
      throw new ChatTemplateError(
        'render-failed',
        `the chat template (${source}) cannot be read: ${(e as Error).message}`,
      );
    }
  }

  /** The conversation as the model reads it, equal to transformers' apply_chat_template(…, tokenize=False). */
  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    const now = opts.now ?? new Date();
    // The globals of transformers' environment (the library's own raise_exception throws a bare Error, and its
    // strftime_now names months in the machine's locale), then the variables apply_chat_template passes.
    const env = new Environment();
    const globals: Record<string, unknown> = {
      true: true,
      false: false,
      none: null,
      True: true,
      False: false,
      None: null,
      range: pythonRange,
      raise_exception: (message: unknown) => {
        throw new TemplateRefusal(String(message));
      },
      strftime_now: (format: unknown) => strftime(now, String(format)),
    };
    const variables: Record<string, unknown> = {
      ...globals,
      ...this.specialTokens,
      ...(opts.variables ?? {}),
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      tools: null,
      documents: null,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    };
    for (const [k, v] of Object.entries(variables)) if (v !== undefined) env.set(k, v);
    try {
      return String(new Interpreter(env).run(this.compiled.parsed).value);
    } catch (e) {
      if (e instanceof TemplateRefusal)
        throw new ChatTemplateError('refused', `the chat template refuses this conversation: ${e.message}`);
      throw new ChatTemplateError('render-failed', `the chat template cannot render it: ${(e as Error).message}`);
    }
  }
}

function pythonRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

/**
 * String literals inside the template's tags read as jinja2 reads them (Python's escapes): a backslash before a line
 * break continues the line (Mistral Small 3.1's system prompt is written so), and an unknown escape keeps its
 * backslash. @huggingface/jinja refuses both, so they are rewritten into escapes it knows.
 */
export function pythonEscapes(src: string): string {
  const known = new Set(['n', 't', 'r', 'b', 'f', 'v', "'", '"', '\\', 'x', 'u']);
  let out = '';
  let i = 0;
  while (i < src.length) {
    const open = src.slice(i).search(/\{[{%#]/);
    if (open < 0) {
      out += src.slice(i);
      break;
    }
    out += src.slice(i, i + open);
    i += open;
    const kind = src[i + 1];
    if (kind === '#') {
      const end = src.indexOf('#}', i + 2);
      const stop = end < 0 ? src.length : end + 2;
      out += src.slice(i, stop);
      i = stop;
      continue;
    }
    const close = kind === '{' ? '}}' : '%}';
    out += src.slice(i, i + 2);
    i += 2;
    while (i < src.length && !src.startsWith(close, i)) {
      const c = src[i];
      if (c !== '"' && c !== "'") {
        out += c;
        i++;
        continue;
      }
      out += c;
      i++;
      while (i < src.length && src[i] !== c) {
        if (src[i] === '\\' && i + 1 < src.length) {
          const e = src[i + 1];
          if (known.has(e)) out += `\\${e}`;
          else if (e !== '\n') out += `\\\\${e}`; // a line continuation is dropped
          i += 2;
          continue;
        }
        out += src[i++];
      }
      if (i < src.length) out += src[i++];
    }
    if (i < src.length) {
      out += close;
      i += 2;
    }
  }
  return out;
}

class TemplateRefusal extends Error {}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

/** Python's datetime.strftime in the C locale (local time), for the directives templates use. */
export function strftime(d: Date, format: string): string {
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  const dayOfYear = Math.floor(
    (Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) - Date.UTC(d.getFullYear(), 0, 1)) / 86_400_000 + 1,
  );
  const h12 = d.getHours() % 12 || 12;
  return format.replace(/%(-?)([a-zA-Z%])/g, (all, flag: string, c: string) => {
    const n = (v: number, w = 2): string => (flag === '-' ? String(v) : pad(v, w));
    switch (c) {
      case 'a':
        return DAYS[d.getDay()].slice(0, 3);
      case 'A':
        return DAYS[d.getDay()];
      case 'b':
      case 'h':
        return MONTHS[d.getMonth()].slice(0, 3);
      case 'B':
        return MONTHS[d.getMonth()];
      case 'd':
        return n(d.getDate());
      case 'e':
        return String(d.getDate()).padStart(2, ' ');
      case 'm':
        return n(d.getMonth() + 1);
      case 'y':
        return pad(d.getFullYear() % 100);
      case 'Y':
        return String(d.getFullYear());
      case 'H':
        return n(d.getHours());
      case 'I':
        return n(h12);
      case 'M':
        return n(d.getMinutes());
      case 'S':
        return n(d.getSeconds());
      case 'p':
        return d.getHours() < 12 ? 'AM' : 'PM';
      case 'j':
        return n(dayOfYear, 3);
      case 'F':
        return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      case '%':
        return '%';
      default:
        return all; // as glibc leaves an unknown directive
    }
  });
}

// ——— locating the assistant's turns ———

/** Character ranges [start, end) of each assistant turn in `text`, the rendered whole conversation. */
export function assistantSpans(
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  text = template.render(messages),
  opts: Omit<RenderOptions, 'addGenerationPrompt'> = {},
): [number, number][] {
  const spans: [number, number][] = [];
  let cursor = 0;
  const tryRender = (upTo: number, prompt: boolean): string | undefined => {
    try {
      return template.render(messages.slice(0, upTo), { ...opts, addGenerationPrompt: prompt });
    } catch {
      return undefined; // some templates refuse a partial conversation: the turn is then found by its content
    }
  };
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const content = m.content.trim();
    const before = tryRender(i, true);
    let start = before !== undefined && text.startsWith(before) && before.length >= cursor ? before.length : -1;
    if (start < 0) start = indexFrom(text, content, cursor, i, template);
    const through = tryRender(i + 1, false);
    let end = through === undefined ? start : trimEnd(text, start, agreeUpTo(text, through, template));
    // A template that writes a turn differently once others follow (Qwen3 drops an empty thinking block from earlier
    // turns): the turn is its content, and the end-of-turn marker right after it.
    if (content && !text.slice(start, end).includes(content)) {
      const at = indexFrom(text, content, start, i, template);
      end = at + content.length;
      const marker = endOfTurnAfter(text, end, template);
      end += marker.length;
    }
    spans.push([start, end]);
    cursor = end;
  });
  return spans;
}

function indexFrom(text: string, content: string, from: number, i: number, template: ChatTemplate): number {
  const at = text.indexOf(content, from);
  if (at < 0)
    throw new ChatTemplateError(
      'turn-not-found',
      `message ${i + 1} (assistant) is not found in the conversation as the chat template (${template.source}) writes it`,
    );
  return at;
}

/**
 * How far two renderings agree, backed off to the start of a special token's text that straddles the point where they
 * part (Phi-3 ends a conversation with eos_token `<|endoftext|>` where a longer one goes on with `<|user|>`: they
 * share `<|`, which is neither's).
 */
function agreeUpTo(a: string, b: string, template: ChatTemplate): number {
  const n = Math.min(a.length, b.length);
  let at = 0;
  while (at < n && a.charCodeAt(at) === b.charCodeAt(at)) at++;
  for (const s of Object.values(template.specialTokens))
    for (const x of [a, b]) {
      if (!s) continue;
      const from = x.lastIndexOf(s, at - 1);
      if (from >= 0 && from < at && from + s.length > at) at = from;
    }
  return at;
}

/** `end` moved back over whitespace, not before `start`: what separates turns is not the assistant's to say. */
function trimEnd(text: string, start: number, end: number): number {
  while (end > start && /\s/.test(text[end - 1])) end--;
  return end;
}

/** The template's end-of-turn marker if `text` has it at `at` (else ''). */
function endOfTurnAfter(text: string, at: number, template: ChatTemplate): string {
  const marker = endOfTurnText(template);
  return marker && text.startsWith(marker, at) ? marker : '';
}

const SENTINEL = 'Sentinel reply 7f3a';

/**
 * What a template writes after an assistant's words at the end of a conversation, whitespace trimmed: its end-of-turn
 * marker ('<|im_end|>', '<|eot_id|>', '</s>', …), possibly followed by more (Phi-3 adds eos_token).
 */
export function endOfTurnText(template: ChatTemplate): string {
  try {
    const text = template.render([
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: SENTINEL },
    ]);
    const at = text.lastIndexOf(SENTINEL);
    return at < 0 ? '' : text.slice(at + SENTINEL.length).trim();
  } catch {
    return '';
  }
}

// ——— tokenizing a conversation ———

/** What chat encoding needs of a tokenizer (and what finding where a reply stops needs). */
export type ChatTokenizer = Pick<TextTokenizer, 'encode' | 'bosId'>;
export type StopTokenizer = Pick<TextTokenizer, 'encode' | 'eosId' | 'isSpecial' | 'specialTokens'>;

export interface EncodedChat {
  ids: number[];
  /** Per token: 1 where it is the assistant's (a training label), else 0. */
  assistant: Uint8Array;
  /** Whether the conversation was longer than maxLength. */
  truncated: boolean;
}

/** Token ids of `text` with no special tokens added (the template wrote them), and their token strings. */
function tokens(tok: ChatTokenizer, text: string): { ids: number[]; tokens: string[] } {
  const e = tok.encode(text, undefined, { addSpecialTokens: false });
  return { ids: e.ids, tokens: e.tokens };
}

/**
 * How many tokens of the whole text's tokenization lie before character `at`: the text up to `at` is tokenized and
 * compared with the whole. When a token straddles `at`, it counts as after it for a start, as before it for an end
 * (a token that holds any of the assistant's characters is the assistant's).
 */
function tokenOffset(tok: ChatTokenizer, text: string, whole: string[], at: number, side: 'start' | 'end'): number {
  if (at <= 0) return 0;
  if (at >= text.length) return whole.length;
  const prefix = tokens(tok, text.slice(0, at)).tokens;
  let m = 0;
  while (m < prefix.length && m < whole.length && prefix[m] === whole[m]) m++;
  if (m === prefix.length) return m;
  return side === 'start' ? m : Math.min(whole.length, m + 1);
}

/**
 * A conversation as training reads it: the rendered text's token ids and which of them are the assistant's. Longer
 * than `maxLength`, it is cut at the end; if that would leave none of the assistant's tokens (a first prompt longer
 * than the limit), the window instead keeps the half of the limit before the first reply (after the bos token, if the
 * text starts with one) and the start of the reply.
 */
export function encodeChat(
  tok: ChatTokenizer,
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  maxLength?: number,
): EncodedChat {
  const text = template.render(messages);
  const whole = tokens(tok, text);
  const assistant = new Uint8Array(whole.ids.length);
  for (const [s, e] of assistantSpans(template, messages, text)) {
    const a = tokenOffset(tok, text, whole.tokens, s, 'start');
    const b = tokenOffset(tok, text, whole.tokens, e, 'end');
    assistant.fill(1, a, Math.max(a, b));
  }
  return truncateChat(whole.ids, assistant, maxLength, tok.bosId);
}

function truncateChat(ids: number[], assistant: Uint8Array, maxLength: number | undefined, bos?: number): EncodedChat {
  if (maxLength === undefined || ids.length <= maxLength) return { ids, assistant, truncated: false };
  if (assistant.subarray(0, maxLength).includes(1))
    return { ids: ids.slice(0, maxLength), assistant: assistant.slice(0, maxLength), truncated: true };
  const first = assistant.indexOf(1);
  const keepBos = bos !== undefined && ids[0] === bos ? 1 : 0;
  const room = maxLength - keepBos;
  const from = Math.max(keepBos, Math.min(first - Math.floor(room / 2), ids.length - room));
  const head = keepBos ? [ids[0]] : [];
  const out = new Uint8Array(maxLength);
  out.set(assistant.subarray(from, from + room), keepBos);
  return { ids: [...head, ...ids.slice(from, from + room)], assistant: out, truncated: true };
}

/** The ids generation continues from: the conversation so far (ending with a user turn) with the generation prompt. */
export function encodeChatPrompt(
  tok: ChatTokenizer,
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  opts: Omit<RenderOptions, 'addGenerationPrompt'> = {},
): number[] {
  return tokens(tok, template.render(messages, { ...opts, addGenerationPrompt: true })).ids;
}

/** Where a reply ends: the template's end-of-turn marker and eos, as token ids (when single tokens) and as text. */
export interface StopRule {
  ids: number[];
  strings: string[];
}

/**
 * The end of an assistant's turn under this template: the first special token the template writes after a reply
 * (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, `<|end|>`, `</s>`), else the whole marker as text (ChatML on a
 * tokenizer that does not know its markers), and the tokenizer's eos token.
 */
export function stopRuleOf(tok: StopTokenizer, template: ChatTemplate): StopRule {
  const ids = new Set<number>();
  const strings = new Set<string>();
  const marker = endOfTurnText(template);
  if (marker) {
    const e = tok.encode(marker, undefined, { addSpecialTokens: false });
    const special = e.ids.findIndex((id) => tok.isSpecial(id));
    if (special >= 0) {
      ids.add(e.ids[special]);
      strings.add(e.tokens[special]);
    } else strings.add(marker);
  }
  if (tok.eosId !== undefined) ids.add(tok.eosId);
  if (tok.specialTokens.eos_token) strings.add(tok.specialTokens.eos_token);
  return { ids: [...ids], strings: [...strings] };
}
