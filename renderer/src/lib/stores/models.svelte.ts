// Models of the workspace.
import type { Api } from '../api.js';
import type { Model } from '../types.js';

export class ModelsStore {
  list = $state.raw<Model[]>([]);

  constructor(private api: Api) {}

  async refresh(): Promise<void> {
    this.list = await this.api.call('models.list', {});
  }

  async import(path: string, opts: { copy?: boolean; name?: string } = {}): Promise<Model> {
    const m = await this.api.call('models.import', { path, ...opts });
    await this.refresh();
    return m;
  }
}
