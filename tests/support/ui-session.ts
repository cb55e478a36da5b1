// The UI as the end-to-end tests drive it: `delta-studio serve` on a free port (its URL and token read from its --json
// line) and a page of Debian's Chromium through playwright-core; close() ends both.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
/** Where the end-to-end tests' screenshots go (docs/screenshots holds the chosen ones). */
export const SHOTS = join(root, 'out/screenshots');

export interface UiSession {
  page: Page;
  /** The server's address, without the token or a trailing slash. */
  url: string;
  token: string;
  /** Clicks a screen's entry in the navigation and waits for its route (#/screen). */
  go(screen: string): Promise<void>;
  /** A full-page screenshot into out/screenshots/<name>.png (the folder made if need be). */
  shot(name: string): Promise<void>;
  close(): Promise<void>;
}

/** Starts `delta-studio serve --port 0 --json <serveArgs>` with `env`, then Chromium on a 1280×860 page. */
export async function startUi(serveArgs: string[], env: NodeJS.ProcessEnv): Promise<UiSession> {
  assert.ok(
    existsSync(join(root, 'renderer/dist/index.html')),
    'renderer/dist is built (npm run build:ui; npm test does it)',
  );
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is installed (apt-get install chromium; .ci/run does it)`);
  const server: ChildProcess = spawn(
    process.execPath,
    [join(root, 'bin/delta-studio.js'), 'serve', '--port', '0', ...serveArgs, '--json'],
    { stdio: ['ignore', 'pipe', 'inherit'], env },
  );
  const info = await new Promise<{ url: string; token: string }>((resolve, reject) => {
    let out = '';
    server.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line) as { url: string; token: string });
    });
    server.on('exit', (code) => reject(new Error(`serve exited with ${code}`)));
  });
  let browser: Browser | undefined;
  const close = async (): Promise<void> => {
    await browser?.close();
    server.kill('SIGINT');
    await new Promise((r) => (server.exitCode !== null ? r(null) : server.on('exit', r)));
  };
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-default-apps',
        '--disable-sync',
        '--no-first-run',
        '--metrics-recording-only',
        '--disable-dev-shm-usage',
      ],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.setDefaultTimeout(60_000);
    const go = async (screen: string): Promise<void> => {
      await page.getByTestId(`nav-${screen}`).click();
      await page.waitForFunction((s) => location.hash === `#/${s}`, screen);
    };
    const shot = async (name: string): Promise<void> => {
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
    };
    return { page, url: info.url.replace(/\?.*$/, '').replace(/\/$/, ''), token: info.token, go, shot, close };
  } catch (e) {
    await close();
    throw e;
  }
}
