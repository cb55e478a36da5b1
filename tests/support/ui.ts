// The UI end-to-end tests' machinery: `delta-studio serve` on a port of its own, and Debian's Chromium driven by
// playwright-core.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CHROMIUM = '/usr/bin/chromium';

export interface Served {
  server: ChildProcess;
  /** The server's address, without the token. */
  url: string;
  token: string;
  /** Stops the server (as Ctrl-C does) and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts `serve` allowing `allow` (its state in `dir`/config), resolving once it has printed its address. */
export async function serveUi(dir: string, allow: string[]): Promise<Served> {
  const server = spawn(
    process.execPath,
    [join(ROOT, 'bin/delta-studio.js'), 'serve', '--port', '0', ...allow.flatMap((a) => ['--allow', a]), '--json'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, XDG_CONFIG_HOME: join(dir, 'config'), APPDATA: join(dir, 'config') },
    },
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
  return {
    server,
    url: info.url.replace(/\?.*$/, '').replace(/\/$/, ''),
    token: info.token,
    stop: async () => {
      server.kill('SIGINT');
      await new Promise((r) => (server.exitCode !== null ? r(null) : server.on('exit', r)));
    },
  };
}

/** Headless Chromium with nothing of its own going on (no sync, updates or background traffic). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
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
}

/** `serve` and a Chromium page for it (1280×860, a minute per step); `close` ends both and removes `dir`. */
export async function openUi(
  dir: string,
  allow: string[],
): Promise<Served & { browser: Browser; page: Page; close(): Promise<void> }> {
  const served = await serveUi(dir, allow);
  const browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.setDefaultTimeout(60_000);
  return {
    ...served,
    browser,
    page,
    close: async () => {
      await browser.close();
      await served.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
