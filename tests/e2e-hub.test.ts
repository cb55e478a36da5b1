// "Download from Hugging Face" in the real UI: `delta-studio serve` with HF_ENDPOINT on a Hub in the test
// (tests/support/fake-hub.ts) that trickles the weights and drops the connection, driven by playwright-core in
// Debian's Chromium. Create a workspace → name a model → watch each file and the total grow (the screenshot) → the
// connection is lost three times, past the retries: the error says what is kept → Download again continues with a
// Range for the rest → the model is listed, read in place from the Hugging Face cache.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { startUi, type UiSession } from './support/ui-session.js';
import { commitFolder, FakeHub, hubEnv } from './support/fake-hub.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const backbone = join(root, 'native/demo/backbone');
const WEIGHTS = 'model.safetensors';

describe('Download from Hugging Face through delta-studio serve', () => {
  let ui: UiSession;
  let page: Page;
  let hub: FakeHub;
  let url = '';
  let token = '';
  const dir = mkdtempSync(join(tmpdir(), 'ds-e2e-hub-'));
  const ws = join(dir, 'workspace');
  const hfHome = join(dir, 'hf');

  before(async () => {
    hub = await new FakeHub().start();
    commitFolder(hub, 'tiny/backbone', backbone);
    const config = join(dir, 'config');
    ui = await startUi(['--allow', dir], hubEnv(hub, hfHome, { XDG_CONFIG_HOME: config, APPDATA: config }));
    ({ page, url, token } = ui);
  });

  after(async () => {
    await ui?.close();
    await hub?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('name a model, watch every file, survive a lost connection, and find the model listed', async () => {
    await page.goto(`${url}/?token=${token}`);
    await page.getByTestId('workspace-path').fill(ws);
    await page.getByTestId('workspace-create').click();
    await page.waitForFunction(() => location.hash === '#/models');

    // The weights trickle in; the connection drops after 400 KB, three times: past the two retries.
    const weights = hub.file('tiny/backbone', WEIGHTS);
    hub.trickle = { chunk: 16_384, delayMs: 25 };
    hub.dropAfter('tiny/backbone', WEIGHTS, 400_000, 3);
    await page.getByTestId('hub-repo').fill('not a name');
    assert.equal(await page.getByTestId('hub-download-submit').isDisabled(), true);
    await page.getByTestId('hub-repo').fill('tiny/backbone');
    await page.getByTestId('hub-download-submit').click();

    // Every file listed, the small ones checked, the weights growing: the screenshot.
    const weightsRow = page.locator(`[data-testid="hub-file"]:has-text("${WEIGHTS}")`);
    await weightsRow.and(page.locator('[data-state="downloading"]')).waitFor();
    await page.waitForFunction((name) => {
      const row = [...document.querySelectorAll('[data-testid="hub-file"]')].find((r) => r.textContent?.includes(name));
      const pct = Number(row?.querySelector('[role="progressbar"]')?.getAttribute('aria-valuenow'));
      return pct >= 8;
    }, WEIGHTS);
    assert.deepEqual(
      await page.getByTestId('hub-file').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.state)),
      ['done', 'done', 'done', 'done', 'downloading'],
    );
    await ui.shot('09-hub-download');

    // Lost three times: the error says what is kept and that the same download continues.
    const error = page.getByTestId('hub-error');
    await error.waitFor({ timeout: 30_000 });
    const kept = 3 * 400_000;
    assert.match(
      (await error.textContent())!,
      new RegExp(
        `the connection to .* was lost during ${WEIGHTS.replace('.', '\\.')} \\(.*\\): its first ${kept} of ${weights.data.length} bytes are kept in the cache; 4 of 5 files are complete: start the same pull of tiny/backbone@main again and it continues where it stopped`,
      ),
    );

    // Download again: a Range for the rest only, then the model is recorded and selected.
    hub.trickle = null;
    const from = hub.requests.length;
    await page.getByTestId('hub-download-submit').click();
    await page.getByTestId('hub-done').waitFor();
    assert.match((await page.getByTestId('hub-done').textContent())!, /recorded as tiny\/backbone/);
    const cdn = hub.since(from).filter((q) => q.server === 'cdn');
    assert.deepEqual(
      cdn.map((q) => [q.range, q.bytes]),
      [[`bytes=${kept}-`, weights.data.length - kept]],
    );
    await page.locator('[data-testid="model-item"][aria-current="true"]:has-text("tiny/backbone")').waitFor();
    await page.getByTestId('module-tree').waitFor();

    // On disk: the Hugging Face cache, the model read in place from its snapshot.
    const repoDir = join(hfHome, 'hub', 'models--tiny--backbone');
    const [commit] = readdirSync(join(repoDir, 'snapshots'));
    assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), commit);
    assert.ok(lstatSync(join(repoDir, 'snapshots', commit, WEIGHTS)).isSymbolicLink());
    const models = await page.evaluate(
      async (t) =>
        (
          await fetch('/api/models.list', {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${t}` },
            body: '{}',
          })
        ).json() as Promise<{ result: { name: string; path: string }[] }>,
      token,
    );
    assert.deepEqual(
      models.result.map((m) => [m.name, m.path]),
      [['tiny/backbone', join(repoDir, 'snapshots', commit)]],
    );
  });
});
