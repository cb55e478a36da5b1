// The real UI end to end: `delta-studio serve` on a temporary folder, driven by playwright-core in Debian's Chromium.
// Create a workspace → import the demo model and data → start a LoRA run → the loss chart gets points → the run
// finishes → plugin v1 appears → export PEFT → the files exist; a sweep of two methods puts two points on the scatter
// plot; the playground answers base vs base + plugin. Screenshots of every screen go to out/screenshots/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { Workspace } from '../native/store/workspace.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { startUi, type UiSession } from './support/ui-session.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const demo = join(root, 'native/demo');

describe('the UI through delta-studio serve', () => {
  let ui: UiSession;
  let page: Page;
  let url = '';
  let token = '';
  const dir = mkdtempSync(join(tmpdir(), 'ds-e2e-'));
  const ws = join(dir, 'workspace');

  before(async () => {
    ui = await startUi(['--allow', dir, '--allow', demo], {
      ...process.env,
      XDG_CONFIG_HOME: join(dir, 'config'),
      APPDATA: join(dir, 'config'),
    });
    ({ page, url, token } = ui);
  });

  after(async () => {
    await ui?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('without the token the server refuses; with it the app loads', async () => {
    const res = await fetch(`${url}/api/app.info`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(res.status, 401);
    await page.goto(`${url}/?token=${token}`);
    await page.getByTestId('workspace-path').waitFor();
    await ui.shot('01-workspaces');
  });

  test('create a workspace, import the demo model and dataset', async () => {
    await page.getByTestId('workspace-path').fill(ws);
    await page.getByTestId('workspace-create').click();
    // Opening a workspace moves on to the models screen; the workspaces screen then names it.
    await page.waitForFunction(() => location.hash === '#/models');
    await ui.go('workspaces');
    assert.equal(await page.getByTestId('workspace-current').textContent(), ws);
    assert.ok(existsSync(join(ws, 'workspace.db')));

    await ui.go('models');
    await page.getByTestId('model-path').fill(join(demo, 'backbone'));
    await page.getByTestId('model-import-submit').click();
    await page.getByTestId('model-item').first().click();
    await page.getByTestId('module-tree').waitFor();
    await page.getByTestId('target-modules').fill('q_proj, v_proj');
    await page.getByTestId('report-trainable').waitFor();
    await page.waitForFunction(
      () =>
        document.querySelectorAll('[data-testid="module-tree"] .delta, [data-testid="module-tree"] [data-delta]')
          .length > 0 || /lora/i.test(document.querySelector('[data-testid="module-tree"]')?.textContent ?? ''),
    );
    await ui.shot('02-models');

    await ui.go('datasets');
    await page.getByTestId('dataset-path').fill(join(demo, 'reviews-train.csv'));
    await page.getByTestId('dataset-preview').click();
    await page.getByTestId('preview-table').waitFor();
    await page.getByTestId('dataset-name').fill('reviews');
    await page.getByTestId('dataset-task').selectOption('classification');
    await page.getByTestId('dataset-import').click();
    await page.getByTestId('label-bars').waitFor();
    await ui.shot('03-datasets');
  });

  test('a LoRA run: estimate, live chart points, finished, plugin v1, PEFT export on disk', async () => {
    await ui.go('new-run');
    await page.getByTestId('run-method').selectOption('lora-r8');
    await page.getByTestId('field-maxSteps').fill('30');
    await page.getByTestId('field-maxLength').fill('32');
    await page.getByTestId('field-evalEvery').fill('10');
    await page.getByTestId('run-estimate').click();
    await page.getByTestId('estimate-trainable').waitFor();
    assert.match((await page.getByTestId('estimate-trainable').textContent())!, /14[,.]?592/);
    await ui.shot('04-new-run');
    await page.getByTestId('run-start').click();
    await page.getByTestId('run-view').waitFor();
    const chart = page.getByTestId('loss-chart');
    await page.waitForFunction(
      () => Number(document.querySelector('[data-testid="loss-chart"]')?.getAttribute('data-points') ?? 0) > 0,
    );
    await page.waitForFunction(
      () => document.querySelector('[data-testid="run-status"]')?.textContent === 'finished',
      null,
      { timeout: 120_000 },
    );
    assert.ok(
      Number(await chart.getAttribute('data-points')) >= 20,
      `loss chart points: ${await chart.getAttribute('data-points')}`,
    );
    await ui.shot('05-run');

    await ui.go('plugins');
    await page.getByTestId('plugin-item').first().click();
    await page.getByTestId('plugin-detail').waitFor();
    assert.match((await page.getByTestId('plugin-version').textContent())!, /v1/);
    await page.getByTestId('export-peft').click();
    await page.getByTestId('export-done').waitFor();
    const exportsDir = join(ws, 'exports');
    const peft = readdirSync(exportsDir).find((f) => f.endsWith('-peft'));
    assert.ok(peft, `a PEFT export in ${exportsDir}: ${readdirSync(exportsDir).join(', ')}`);
    assert.ok(existsSync(join(exportsDir, peft, 'adapter_config.json')));
    assert.ok(existsSync(join(exportsDir, peft, 'adapter_model.safetensors')));
    await ui.shot('06-plugins');
  });

  test('a sweep of two methods shows both points on the scatter plot', async () => {
    await ui.go('compare');
    for (const id of ['lora-r8', 'ia3', 'bitfit']) {
      const box = page.getByTestId(`sweep-method-${id}`);
      if ((await box.isChecked()) !== (id !== 'ia3')) await box.click();
    }
    await page.getByTestId('sweep-max-steps').fill('12');
    await page.getByTestId('sweep-max-length').fill('32');
    await page.getByTestId('sweep-start').click();
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('[data-testid="sweep-point"]')].filter((r) =>
          /finished/.test(r.textContent ?? ''),
        ).length === 2,
      null,
      { timeout: 180_000 },
    );
    await page.waitForFunction(
      () => Number(document.querySelector('[data-testid="sweep-scatter"]')?.getAttribute('data-points') ?? 0) === 2,
    );
    await ui.shot('07-compare');
  });

  test('the playground shows base and base + plugin side by side', async () => {
    await ui.go('playground');
    await page.getByTestId('playground-plugin').first().check();
    await page.getByTestId('playground-input').fill('a superb, wonderful film');
    await page.getByTestId('playground-run').click();
    await page.getByTestId('prediction-plugins').waitFor();
    await page.waitForFunction(() =>
      /positive|negative/.test(document.querySelector('[data-testid="prediction-plugins"]')?.textContent ?? ''),
    );
    await ui.shot('08-playground');
  });

  test('runs screen after a reload still shows the finished run and its chart', async () => {
    await ui.go('runs');
    await page.reload();
    await page.getByTestId('run-item').first().click();
    await page.waitForFunction(() => document.querySelector('[data-testid="run-status"]')?.textContent === 'finished');
    await page.waitForFunction(
      () => Number(document.querySelector('[data-testid="loss-chart"]')?.getAttribute('data-points') ?? 0) > 0,
    );
    // The log comes back from the run's folder.
    await page.waitForFunction(() =>
      /status finished; plugin \S+@\d/.test(document.querySelector('[data-testid="run-logs"]')?.textContent ?? ''),
    );
    await page.locator('summary', { hasText: 'Logs' }).click();
    await ui.shot('09-runs-after-reload');
  });

  test('opening a damaged workspace offers the workspace check, which reports the damage', async () => {
    const broken = join(dir, 'broken');
    Workspace.init(broken).close();
    const db = join(broken, 'workspace.db');
    const bytes = readFileSync(db);
    bytes.fill(0x41, 4096, 12288);
    writeFileSync(db, bytes);
    rmSync(`${db}-wal`, { force: true });
    await ui.go('workspaces');
    await page.getByTestId('workspace-path').fill(broken);
    await page.getByTestId('workspace-open').click();
    await page.getByTestId('workspace-check-damaged').click();
    await page.getByTestId('check-report').waitFor();
    assert.match((await page.getByTestId('check-report').textContent())!, /problem/);
    await ui.shot('10-damaged-workspace');
  });

  test('the screens are reachable from the keyboard', async () => {
    await page.goto(`${url}/#/workspaces`);
    await page.getByTestId('workspace-path').waitFor();
    let focused = '';
    for (let i = 0; i < 30 && focused !== 'nav-plugins'; i++) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement?.getAttribute('data-testid') ?? '');
    }
    assert.equal(focused, 'nav-plugins', 'Tab reaches the navigation');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => location.hash === '#/plugins');
    await page.getByTestId('plugin-item').first().focus();
    await page.keyboard.press('Enter');
    await page.getByTestId('plugin-detail').waitFor();
  });
});
