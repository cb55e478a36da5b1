// --model takes a model folder, or the name a model has in the workspace (what `models pull` and `models list` call
// it, e.g. "Qwen/Qwen2.5-0.5B-Instruct"), so a model pulled by name is trained and used by that name.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { HUB_REPO_ID } from '../contract/index.js';
import { Application } from '../app/index.js';
import type { Values } from './output.js';
import { workspaceDir } from './workspace-dir.js';

/** Replaces a --model that names a workspace's model with its folder; a path (even a missing one) is left as it is. */
export async function resolveModelFlag(v: Values): Promise<void> {
  const arg = v.model;
  if (typeof arg !== 'string' || statSync(arg, { throwIfNoEntry: false }) || !HUB_REPO_ID.test(arg)) return;
  const dir = workspaceDir(v);
  if (existsSync(join(dir, 'workspace.db'))) {
    const app = new Application();
    try {
      await app.open(dir, false);
      // Names need not be unique: the latest model of that name is the one meant.
      const found = app.models
        .list()
        .filter((m) => m.name === arg)
        .at(-1);
      if (found) {
        v.model = found.path;
        return;
      }
    } finally {
      await app.close();
    }
  }
  if (arg.includes('/'))
    throw new Error(
      `--model ${arg}: no such folder, and the workspace ${dir} has no model of that name: download it with ` +
        `delta-studio models pull ${arg}${typeof v.workspace === 'string' ? ` --workspace ${v.workspace}` : ''}`,
    );
}
