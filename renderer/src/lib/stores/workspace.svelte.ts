// The open workspace and the recent list.
import type { Api } from '../api.js';
import type { AppInfo, CheckReport, RecentWorkspace, WorkspaceInfo } from '../types.js';

export class WorkspaceStore {
  info = $state.raw<AppInfo | null>(null);
  current = $state.raw<WorkspaceInfo | null>(null);
  recent = $state.raw<RecentWorkspace[]>([]);
  check = $state.raw<CheckReport | null>(null);

  constructor(private api: Api) {}

  async refresh(): Promise<void> {
    this.info = await this.api.call('app.info', {});
    this.recent = await this.api.call('workspace.recent', {});
  }

  async open(path: string, create = false): Promise<WorkspaceInfo> {
    this.current = await this.api.call(create ? 'workspace.create' : 'workspace.open', { path });
    this.check = null;
    void this.refresh().catch(() => {});
    return this.current;
  }

  /** Checks the open workspace, or `path` (one that failed to open). */
  async runCheck(repair = false, path?: string): Promise<CheckReport> {
    this.check = await this.api.call('workspace.check', path ? { repair, path } : { repair });
    return this.check;
  }

  get isOpen(): boolean {
    return !!(this.current ?? this.info?.workspace);
  }

  get path(): string | null {
    return this.current?.path ?? this.info?.workspace ?? null;
  }
}
