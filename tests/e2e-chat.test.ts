// The chat flow in the real UI: `delta-studio serve` driven by playwright-core in Debian's Chromium. Download the tiny
// Qwen2 (a copy given a ChatML chat template) by name from a Hub in the test → import a conversations file in the dataset wizard, which guesses a
// chat and shows the first conversation as the model's template writes it, the assistant's parts highlighted → a
// LoRA run on the assistant turns → the chat playground: base and base + plugin side by side, the replies streamed,
// a conversation of two turns. Screenshots go to out/screenshots/ (10-chat.png is the one docs/screenshots shows).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { qwenWithChatTemplate, writeConversations } from './support/chat.js';
import { commitFolder, FakeHub, hubEnv } from './support/fake-hub.js';
import { startUi, type UiSession } from './support/ui-session.js';

describe('the chat flow in the UI through delta-studio serve', () => {
  let ui: UiSession;
  let page: Page;
  let hub: FakeHub;
  const dir = mkdtempSync(join(tmpdir(), 'ds-e2e-chat-'));
  const ws = join(dir, 'workspace');
  const model = join(dir, 'qwen2-chat');
  const data = join(dir, 'conversations.jsonl');

  before(async () => {
    // The committed fixture has no template: the test's copy gets one.
    qwenWithChatTemplate(model);
    writeConversations(data);
    hub = await new FakeHub().start();
    commitFolder(hub, 'tiny/qwen2-chat', model);
    const config = join(dir, 'config');
    ui = await startUi(['--allow', dir], hubEnv(hub, join(dir, 'hf'), { XDG_CONFIG_HOME: config, APPDATA: config }));
    page = ui.page;
  });

  after(async () => {
    await ui?.close();
    await hub?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a workspace and the model, downloaded by name', async () => {
    await page.goto(`${ui.url}/?token=${ui.token}`);
    await page.getByTestId('workspace-path').fill(ws);
    await page.getByTestId('workspace-create').click();
    await page.waitForFunction(() => location.hash === '#/models');
    await page.getByTestId('hub-repo').fill('tiny/qwen2-chat');
    await page.getByTestId('hub-download-submit').click();
    await page.getByTestId('hub-done').waitFor();
    assert.match((await page.getByTestId('hub-done').textContent())!, /recorded as tiny\/qwen2-chat/);
    await page.getByTestId('model-item').first().waitFor();
  });

  test('the wizard guesses a chat and shows the first conversation as the template writes it', async () => {
    await ui.go('datasets');
    await page.getByTestId('dataset-path').fill(data);
    await page.getByTestId('dataset-preview').click();
    await page.getByTestId('preview-table').waitFor();
    assert.equal(await page.getByTestId('dataset-task').inputValue(), 'chat');
    assert.equal(await page.getByTestId('column-messages').inputValue(), 'messages');
    // Rendered with the model's chat template: the assistant's reply and its end-of-turn marker highlighted.
    await page.getByTestId('chat-rendered').waitFor();
    assert.equal(
      await page.getByTestId('chat-rendered').textContent(),
      '<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n',
    );
    assert.deepEqual(await page.getByTestId('chat-assistant-part').allTextContents(), ['Paris.<|im_end|>']);
    await page.getByTestId('dataset-name').fill('greetings');
    await page.locator('input[type="number"]').first().fill('0'); // validation fraction: learn all three
    await ui.shot('10-chat-dataset');
    await page.getByTestId('dataset-import').click();
    await page.getByTestId('chat-turns').waitFor();
    assert.match((await page.getByTestId('chat-turns').textContent())!, /1–2/);
  });

  test('a LoRA run on the assistant turns finishes', async () => {
    await ui.go('new-run');
    await page.getByTestId('run-method').selectOption('lora-r8');
    await page.getByTestId('field-epochs').fill('100');
    await page.getByTestId('field-lr').fill('0.05');
    await page.getByTestId('field-warmup').fill('0');
    await page.getByTestId('field-maxLength').fill('64');
    await page.getByTestId('run-start').click();
    await page.getByTestId('run-view').waitFor();
    await page.waitForFunction(
      () => document.querySelector('[data-testid="run-status"]')?.textContent === 'finished',
      null,
      { timeout: 120_000 },
    );
  });

  test('the chat playground: base and base + plugin side by side, streamed, multi-turn', async () => {
    await ui.go('playground');
    await page.getByTestId('chat-panel').waitFor();
    await page.getByTestId('playground-plugin').first().check();
    await page.getByTestId('chat-max-new-tokens').fill('24'); // the untrained base rambles
    // Count the text changes of the plugin's reply as it streams.
    await page.evaluate(() => {
      const w = window as unknown as { seen: string[] };
      w.seen = [];
      new MutationObserver(() => {
        const t = document.querySelectorAll('[data-testid="chat-reply-plugins"]');
        const last = t[t.length - 1]?.textContent ?? '';
        if (w.seen[w.seen.length - 1] !== last) w.seen.push(last);
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await page.getByTestId('chat-input').fill('Capital of France?');
    await page.getByTestId('chat-send').click();
    await page.waitForFunction(() =>
      /tokens$/.test(document.querySelector('[data-testid="chat-turn"] .plugin .small')?.textContent ?? ''),
    );
    await page.waitForFunction(() => document.querySelector('[data-testid="chat-send"]')?.textContent === 'Send');
    assert.equal(await page.getByTestId('chat-reply-plugins').first().textContent(), 'Paris.');
    const base = await page.getByTestId('chat-reply-base').first().textContent();
    assert.ok(base !== null && base !== 'Paris.', `the bare base says something else: ${base}`);
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    assert.ok(seen.includes('Paris.'), JSON.stringify(seen));

    // A new conversation of two turns: the second reply follows from the first exchange.
    await page.getByTestId('chat-reset').click();
    for (const [i, [user, reply]] of [
      ['Hi', 'Hello!'],
      ['Bye', 'Ciao.'],
    ].entries()) {
      await page.getByTestId('chat-input').fill(user);
      await page.getByTestId('chat-input').press('Enter');
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid="chat-turn"]').length === n, i + 1);
      await page.waitForFunction(() => document.querySelector('[data-testid="chat-send"]')?.textContent === 'Send');
      assert.equal(await page.getByTestId('chat-reply-plugins').nth(i).textContent(), reply);
    }
    assert.match((await page.getByTestId('chat-template-used').textContent())!, /default \(tokenizer_config\.json\)/);
    await ui.shot('10-chat');
  });
});
