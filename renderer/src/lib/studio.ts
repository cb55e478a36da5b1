// The app's context: one api client and the stores built on it. Components read it with useStudio().
import { getContext, setContext } from 'svelte';
import type { Api } from './api.js';
import { DatasetsStore } from './stores/datasets.svelte.js';
import { JobsStore } from './stores/jobs.svelte.js';
import { ModelsStore } from './stores/models.svelte.js';
import { PluginsStore } from './stores/plugins.svelte.js';
import { PullsStore } from './stores/pulls.svelte.js';
import { RunsStore } from './stores/runs.svelte.js';
import { WorkspaceStore } from './stores/workspace.svelte.js';

export interface Studio {
  api: Api;
  workspace: WorkspaceStore;
  models: ModelsStore;
  datasets: DatasetsStore;
  runs: RunsStore;
  plugins: PluginsStore;
  jobs: JobsStore;
  /** Downloads from the Hugging Face Hub. */
  pulls: PullsStore;
}

export function createStudio(api: Api): Studio {
  const models = new ModelsStore(api);
  const jobs = new JobsStore(api);
  return {
    api,
    workspace: new WorkspaceStore(api),
    models,
    datasets: new DatasetsStore(api),
    runs: new RunsStore(api),
    plugins: new PluginsStore(api),
    jobs,
    pulls: new PullsStore(api, models, jobs),
  };
}

const KEY = Symbol.for('delta-studio');
export const STUDIO_KEY = KEY;

export function provideStudio(s: Studio): Studio {
  return setContext(KEY, s);
}

export function useStudio(): Studio {
  const s = getContext<Studio | undefined>(KEY);
  if (!s) throw new Error('useStudio: no Studio in context (render inside <App> or pass context)');
  return s;
}
