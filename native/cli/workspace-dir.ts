// The workspace a command works in: --workspace, else $DELTA_STUDIO_WORKSPACE, else ./delta-studio-workspace.
import { resolve } from 'node:path';

export function workspaceDir(v: Record<string, unknown>): string {
  return resolve(
    typeof v.workspace === 'string' ? v.workspace : (process.env.DELTA_STUDIO_WORKSPACE ?? 'delta-studio-workspace'),
  );
}
