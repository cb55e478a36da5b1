// The plugin library: the list, and the detail of the selected plugin.
import type { Api } from '../api.js';
import type { PluginDetail, PluginSummary } from '../types.js';

export class PluginsStore {
  list = $state.raw<PluginSummary[]>([]);
  detail = $state.raw<PluginDetail | null>(null);

  constructor(private api: Api) {}

  async refresh(): Promise<void> {
    this.list = await this.api.call('plugins.list', {});
  }

  async select(name: string): Promise<PluginDetail> {
    this.detail = await this.api.call('plugins.get', { name });
    return this.detail;
  }

  async reload(): Promise<void> {
    if (this.detail) await this.select(this.detail.name);
  }
}
