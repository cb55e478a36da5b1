// The workspaces a user opened recently (newest first, at most 20), kept in the per-user state folder.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic.js';
import type { RecentWorkspace } from '../contract/index.js';

interface Entry {
  path: string;
  openedAt: string;
}

export class RecentWorkspaces {
  private readonly file: string | null;

  /** Without a state folder nothing is remembered (the CLI's one-shot commands). */
  constructor(private readonly stateDir: string | undefined) {
    this.file = stateDir ? join(stateDir, 'recent-workspaces.json') : null;
  }

  private read(): Entry[] {
    if (!this.file) return [];
    try {
      const r = JSON.parse(readFileSync(this.file, 'utf8')) as unknown;
      return Array.isArray(r) ? (r as Entry[]).filter((x) => typeof x?.path === 'string') : [];
    } catch {
      return [];
    }
  }

  remember(dir: string): void {
    if (!this.file || !this.stateDir) return;
    const list = [{ path: dir, openedAt: new Date().toISOString() }, ...this.read().filter((r) => r.path !== dir)];
    mkdirSync(this.stateDir, { recursive: true });
    writeFileAtomic(this.file, new TextEncoder().encode(`${JSON.stringify(list.slice(0, 20), null, 2)}\n`));
  }

  list(): RecentWorkspace[] {
    return this.read().map((r) => ({ ...r, exists: existsSync(r.path) }));
  }
}
