// `delta-studio serve`: the engine and the UI over HTTP + WebSocket (headless mode: the engine on a GPU server, the
// UI in a browser). Listens on localhost by default; reach it from elsewhere through an SSH tunnel.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createService } from '../api/service.js';
import { startServer } from '../api/server.js';

/** Per-user state (recent workspaces): $XDG_CONFIG_HOME/delta-studio, %APPDATA%\delta-studio, ~/.config/delta-studio. */
export function userStateDir(): string {
  if (process.platform === 'win32' && process.env.APPDATA) return join(process.env.APPDATA, 'delta-studio');
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'delta-studio');
}

const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : typeof v === 'string' ? [v] : []);

export async function serveCommand(v: Record<string, string | boolean | string[] | undefined>): Promise<number> {
  const host = typeof v.host === 'string' ? v.host : '127.0.0.1';
  const port = v.port === undefined ? 8470 : Number(v.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`--port must be an integer from 0 to 65535, got "${String(v.port)}"`);
  const token = typeof v.token === 'string' ? v.token : undefined;
  if (token !== undefined && token.length < 16)
    throw new Error('--token must be at least 16 characters (default: 32 random bytes)');
  const workspace = typeof v.workspace === 'string' ? resolve(v.workspace) : undefined;
  const allow = list(v.allow).map((d) => resolve(d));
  const publicHosts = list(v['public-host']);
  for (const h of publicHosts)
    if (!/^(\[[0-9a-f:.]+\]|[\w.-]+):\d{1,5}$/i.test(h))
      throw new Error(`--public-host ${h}: write host:port, e.g. localhost:9000 or my-proxy.example:443`);
  for (const d of allow) if (!existsSync(d)) throw new Error(`--allow ${d}: no such folder`);
  const local = host === '127.0.0.1' || host === 'localhost' || host === '::1';
  if (!local) {
    process.stderr.write(
      `warning: listening on ${host}: the token is the only protection and the traffic is not encrypted; prefer the default 127.0.0.1 with an SSH tunnel (ssh -L 8470:127.0.0.1:8470 server)\n`,
    );
  }
  const stateDir = userStateDir();
  const service = createService({ stateDir, dataDir: stateDir, transport: 'http', workspace });
  const staticDir = fileURLToPath(new URL('../../renderer/dist', import.meta.url));
  const server = await startServer({
    service,
    host,
    port,
    token,
    staticDir,
    allowedRoots: [...(workspace ? [workspace] : []), ...allow],
    hosts: publicHosts,
  });
  const url = `${server.url}?token=${server.token}`;
  if (v.json === true) process.stdout.write(`${JSON.stringify({ url, token: server.token, port: server.port })}\n`);
  else {
    process.stdout.write(
      `Delta Studio is serving ${workspace ?? '(no workspace yet: open one in the UI)'}\nopen ${url}\n`,
    );
    if (!existsSync(staticDir)) process.stdout.write(`(the UI is not built: ${staticDir} is missing; the API works)\n`);
    process.stdout.write('Ctrl-C stops it (a training run stops after its step and can be resumed).\n');
  }
  await new Promise<void>((done) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      done();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await server.close();
  await service.close();
  return 0;
}
