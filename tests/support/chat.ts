// Conversations the chat tests train on, and the tiny Qwen2 given a chat template (a copy: committed fixtures stay
// as they are).
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChatMessage } from '../../native/contract/types.js';
import { BUILT_IN_TEMPLATES } from '../../native/models/chat-template.js';

export const QWEN = fileURLToPath(new URL('../fixtures/models/qwen2', import.meta.url));

/** Three short conversations (one with a system message, one of two turns) that LoRA on the tiny Qwen2 learns. */
export const CONVERSATIONS: ChatMessage[][] = [
  [
    { role: 'user', content: 'Capital of France?' },
    { role: 'assistant', content: 'Paris.' },
  ],
  [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Capital of Italy?' },
    { role: 'assistant', content: 'Rome.' },
  ],
  [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'Bye' },
    { role: 'assistant', content: 'Ciao.' },
  ],
];

/** `file` as JSONL of {messages} rows. */
export function writeConversations(file: string, conversations = CONVERSATIONS): string {
  writeFileSync(file, conversations.map((messages) => JSON.stringify({ messages })).join('\n') + '\n');
  return file;
}

/** A copy of the tiny Qwen2 at `dir` whose tokenizer_config.json has a chat template (ChatML by default). */
export function qwenWithChatTemplate(dir: string, template = BUILT_IN_TEMPLATES.chatml): string {
  cpSync(QWEN, dir, { recursive: true });
  const file = join(dir, 'tokenizer_config.json');
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  writeFileSync(file, JSON.stringify({ ...cfg, chat_template: template }, null, 2));
  return dir;
}
