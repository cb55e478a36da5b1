// Datasets and their versions.
import type { Api } from '../api.js';
import type { DatasetSummary } from '../types.js';

export class DatasetsStore {
  list = $state.raw<DatasetSummary[]>([]);

  constructor(private api: Api) {}

  async refresh(): Promise<void> {
    this.list = await this.api.call('datasets.list', {});
  }

  /** Every version as one choice, newest first within a dataset. */
  get versions(): { id: number; label: string; task: string; datasetId: number }[] {
    return this.list.flatMap((d) =>
      [...d.versions].reverse().map((v, i) => ({
        id: v.id,
        datasetId: d.id,
        task: v.task,
        label: `${d.name} · v${d.versions.length - i} (${v.digest.slice(0, 8)})`,
      })),
    );
  }
}
