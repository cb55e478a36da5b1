// The chat path end to end on the tiny Qwen2 (a copy given a ChatML chat template in its tokenizer_config.json),
// served by a Hub in the test: pull it by name (`delta-studio models pull tiny/qwen2-chat`) → import a conversations file → LoRA on its assistant turns (`delta-studio train --task chat`) → chat with base and
// base + plugin (`predict --chat`, and the contract's playground.chat with its playground.token stream) → export
// merged and PEFT, the merged model answering as the plugin does. A model without a template is refused, offering
// chatml; `--chat-template chatml` trains it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createService, type Service } from '../native/api/service.js';
import type { Events } from '../native/contract/index.js';
import { BUILT_IN_TEMPLATES } from '../native/models/chat-template.js';
import { PluginSession } from '../native/plugins/session.js';
import { QWEN, qwenWithChatTemplate, writeConversations } from './support/chat.js';
import { commitFolder, FakeHub, hubEnv } from './support/fake-hub.js';

const bin = fileURLToPath(new URL('../bin/delta-studio.js', import.meta.url));
const lastJson = <T>(out: string): T => JSON.parse(out.trim().split('\n').pop()!) as T;

describe('chat end to end: conversations → LoRA → chat with base and plugin → export', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ds-chat-e2e-'));
  const model = join(dir, 'qwen2-chat');
  const ws = join(dir, 'ws');
  const data = join(dir, 'conversations.jsonl');
  const hfHome = join(dir, 'hf');
  let hub: FakeHub;
  const env = (): NodeJS.ProcessEnv => hubEnv(hub, hfHome);
  const cli = (args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], env: env() });

  before(async () => {
    qwenWithChatTemplate(model);
    writeConversations(data);
    hub = await new FakeHub().start();
    commitFolder(hub, 'tiny/qwen2-chat', model);
  });
  after(async () => {
    await hub?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('models pull: the model comes from the Hub by name into the Hugging Face cache, and is named so', async () => {
    // Not spawnSync: the Hub answers from this process.
    const r = await promisify(execFile)(
      process.execPath,
      [bin, 'models', 'pull', 'tiny/qwen2-chat', '--workspace', ws, '--json'],
      { encoding: 'utf8', env: env() },
    );
    const out = lastJson<{ snapshot: string; model: { name: string; path: string } }>(r.stdout);
    assert.equal(out.model.name, 'tiny/qwen2-chat');
    assert.ok(out.snapshot.startsWith(join(hfHome, 'hub', 'models--tiny--qwen2-chat', 'snapshots')), out.snapshot);
    assert.equal(out.model.path, out.snapshot);
    // The template travelled with the tokenizer files.
    const cfg = JSON.parse(readFileSync(join(out.snapshot, 'tokenizer_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(cfg.chat_template, BUILT_IN_TEMPLATES.chatml);
    // A Hub name that was never pulled is not a folder: the error says how to get it.
    const missing = cli([...trainArgs('tiny/other', 'x'), '--max-steps', '1']);
    assert.equal(missing.status, 1);
    assert.match(
      missing.stderr,
      /--model tiny\/other: no such folder.*delta-studio models pull tiny\/other --workspace/,
    );
  });

  const trainArgs = (m: string, plugin: string) => [
    'train',
    '--model',
    m,
    '--data',
    data,
    '--validation',
    data,
    '--task',
    'chat',
    '--method',
    'lora',
    '--set',
    'target_modules=q_proj,v_proj,o_proj,up_proj,down_proj',
    '--epochs',
    '150',
    '--batch-size',
    '3',
    '--lr',
    '0.03',
    '--warmup',
    '0',
    '--max-length',
    '64',
    '--device',
    'cpu',
    '--workspace',
    ws,
    '--plugin',
    plugin,
    '--json',
  ];

  test('train --task chat --model <its name>: LoRA on the assistant turns learns the replies', () => {
    const r = cli(trainArgs('tiny/qwen2-chat', 'chatbot'));
    assert.equal(r.status, 0, r.stderr);
    const out = lastJson<{
      status: string;
      metrics: Record<string, number>;
      plugin: { name: string; version: number };
    }>(r.stdout);
    assert.equal(out.status, 'finished');
    assert.equal(out.metrics.exact_match, 1, JSON.stringify(out.metrics));
    assert.deepEqual([out.plugin.name, out.plugin.version], ['chatbot', 1]);
  });

  test('a model without a chat template is refused before anything is recorded, offering chatml', () => {
    const r = cli(trainArgs(QWEN, 'nochat'));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /has no chat template .*chatml.*--chat-template chatml/);
    const named = cli([...trainArgs(QWEN, 'named'), '--chat-template', 'chatml', '--max-steps', '2']);
    assert.equal(named.status, 0, named.stderr);
    assert.equal(lastJson<{ status: string }>(named.stdout).status, 'finished');
  });

  test('predict --chat: the plugin answers with what it learnt, beside the bare base, streamed as it comes', () => {
    const r = cli([
      'predict',
      '--plugin',
      'chatbot',
      '--chat',
      '--text',
      'Capital of France?',
      '--compare-base',
      '--device',
      'cpu',
      '--workspace',
      ws,
    ]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], 'chat template: default (tokenizer_config.json)');
    assert.equal(lines[1], 'chatbot: Paris.');
    assert.match(lines[2], /^base: /);
    assert.notEqual(lines[2], 'base: Paris.');
    // Multi-turn from the input, one message a line: the second reply follows the first exchange.
    const multi = spawnSync(
      process.execPath,
      [bin, 'predict', '--plugin', 'chatbot', '--chat', '--device', 'cpu', '--workspace', ws, '--json'],
      { encoding: 'utf8', input: 'Hi\nBye\n' },
    );
    assert.equal(multi.status, 0, multi.stderr);
    const turns = lastJson<{ turns: { user: string; plugins: { text: string; stopped: string } }[] }>(
      multi.stdout,
    ).turns;
    assert.deepEqual(
      turns.map((t) => [t.user, t.plugins.text, t.plugins.stopped]),
      [
        ['Hi', 'Hello!', 'stop'],
        ['Bye', 'Ciao.', 'stop'],
      ],
    );
  });

  describe('through the contract', () => {
    let service: Service;
    before(async () => {
      service = createService({ stateDir: join(dir, 'state') });
      await service.handlers['workspace.open']({ path: ws });
    });
    after(() => service.close());

    test('playground.chat streams playground.token events for both sides; their text is the reply', async () => {
      const models = await service.handlers['models.list']({});
      const events: Events['playground.token'][] = [];
      const on = (e: Events['playground.token']): void => void events.push(e);
      service.events.on('playground.token', on);
      const r = await service.handlers['playground.chat']({
        modelId: models[0].id,
        plugins: ['chatbot'],
        messages: [{ role: 'user', content: 'Capital of Italy?' }],
        compareBase: true,
        maxNewTokens: 24,
        device: 'cpu',
        streamId: 'e2e-1',
      });
      service.events.off('playground.token', on);
      assert.equal(r.plugins?.text, 'Rome.');
      assert.equal(r.plugins?.stopped, 'stop');
      assert.ok(r.base && r.base.text !== 'Rome.');
      assert.deepEqual(r.template, { name: 'default', source: 'tokenizer_config.json' });
      for (const side of ['plugins', 'base'] as const) {
        const mine = events.filter((e) => e.side === side);
        assert.ok(mine.length >= 1 && mine.every((e) => e.streamId === 'e2e-1'));
        assert.equal(mine.map((e) => e.delta).join(''), r[side]!.text, side);
        assert.equal(mine[mine.length - 1].stopped, r[side]!.stopped);
      }
      // A conversation that does not end with the user's message is refused.
      await assert.rejects(
        service.handlers['playground.chat']({
          modelId: models[0].id,
          plugins: [],
          messages: [
            { role: 'user', content: 'x' },
            { role: 'assistant', content: 'y' },
          ],
          compareBase: true,
          maxNewTokens: 4,
          device: 'cpu',
        }),
        /must end with the user's message/,
      );
    });
  });

  test('export merged and PEFT: the merged model answers as base + plugin does, and keeps the chat template', async () => {
    const exp = (format: string) =>
      lastJson<{ path: string; files: string[] }>(
        execFileSync(process.execPath, [bin, 'export', 'chatbot', '--format', format, '--workspace', ws, '--json'], {
          encoding: 'utf8',
        }),
      );
    const peft = exp('peft');
    const adapter = JSON.parse(readFileSync(join(peft.path, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(adapter.task_type, 'CAUSAL_LM');
    assert.ok(existsSync(join(peft.path, 'adapter_model.safetensors')));
    const merged = exp('merged');
    const tokCfg = JSON.parse(readFileSync(join(merged.path, 'tokenizer_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(tokCfg.chat_template, BUILT_IN_TEMPLATES.chatml);
    const session = await PluginSession.open(merged.path, { device: 'cpu' });
    try {
      let text = '';
      for await (const s of session.chat([{ role: 'user', content: 'Capital of France?' }], {
        template: session.chatTemplate(),
        maxNewTokens: 16,
      }))
        text = s.text;
      assert.equal(text, 'Paris.');
    } finally {
      await session.close();
    }
  });
});
