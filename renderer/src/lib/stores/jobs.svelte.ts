// Long work (imports, exports, installs): progress and outcome per job id, from job.progress / job.done.
import type { Api, Unsubscribe } from '../api.js';
import type { ApiError } from '../types.js';

export interface JobState {
  id: string;
  label: string;
  fraction: number;
  message: string;
  done: boolean;
  result?: unknown;
  error?: ApiError;
}

export class JobsStore {
  jobs = $state<Record<string, JobState>>({});
  private waiters = new Map<string, ((j: JobState) => void)[]>();
  private offs: Unsubscribe[] = [];

  constructor(api: Api) {
    this.offs.push(
      api.on('job.progress', (e) => {
        const j = this.ensure(e.jobId);
        j.fraction = e.fraction;
        j.message = e.message;
      }),
      api.on('job.done', (e) => {
        const j = this.ensure(e.jobId);
        j.done = true;
        j.fraction = e.error ? j.fraction : 1;
        j.result = e.result;
        if (e.error) j.error = { code: (e.error.code as ApiError['code']) ?? 'failed', message: e.error.message };
        const snapshot = { ...j };
        for (const w of this.waiters.get(e.jobId) ?? []) w(snapshot);
        this.waiters.delete(e.jobId);
      }),
    );
  }

  private ensure(id: string, label = ''): JobState {
    if (!this.jobs[id]) this.jobs[id] = { id, label, fraction: 0, message: '', done: false };
    return this.jobs[id];
  }

  /** Registers a job a method returned, so that its progress shows under `label`. */
  track(id: string, label: string): JobState {
    const j = this.ensure(id, label);
    j.label = label;
    return j;
  }

  /** Resolves when the job is done (with its result or error). */
  wait(id: string): Promise<JobState> {
    const j = this.jobs[id];
    if (j?.done) return Promise.resolve({ ...j });
    return new Promise((resolve) => {
      const list = this.waiters.get(id) ?? [];
      list.push(resolve);
      this.waiters.set(id, list);
    });
  }

  get active(): JobState[] {
    return Object.values(this.jobs).filter((j) => !j.done);
  }

  dispose(): void {
    for (const off of this.offs.splice(0)) off();
  }
}
