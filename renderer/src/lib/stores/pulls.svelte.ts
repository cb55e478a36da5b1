// Downloads from the Hugging Face Hub (models.pull jobs): every file's bytes from pull.progress, the outcome from
// job.done, kept here rather than in the screen so a download goes on showing after switching screens and back.
import type { Api, Unsubscribe } from '../api.js';
import type { ApiError, HubPullProgress, ModelPulled } from '../types.js';
import { HUB_REPO_ID, HUB_REVISION } from '../../../../native/contract/vocabulary.js';
import type { JobsStore } from './jobs.svelte.js';
import type { ModelsStore } from './models.svelte.js';

/** A pull as the form shows it: its last progress, then its outcome. */
export interface PullView extends Omit<HubPullProgress, 'fetched'> {
  jobId: string;
  done: boolean;
  result: ModelPulled | null;
  error: ApiError | null;
}

export interface PullRequest {
  repo: string;
  revision?: string;
  /** Sent with this request only; the store never keeps it. */
  token?: string;
}

/** What is wrong with a name or revision before asking (the contract's own patterns), or null. */
export function pullProblem(p: PullRequest): string | null {
  if (!HUB_REPO_ID.test(p.repo.trim())) return 'A model on the Hub is named org/name, e.g. Qwen/Qwen2.5-0.5B-Instruct.';
  const rev = p.revision?.trim();
  if (rev && !HUB_REVISION.test(rev)) return 'A revision is a branch, a tag, a commit or refs/pr/N.';
  return null;
}

export class PullsStore {
  /** Every pull seen, by job id (events may arrive before the call that started it returns). */
  views = $state<Record<string, PullView>>({});
  /** The pull this window started last: the one the form shows. */
  currentId = $state<string | null>(null);
  private offs: Unsubscribe[] = [];

  constructor(
    private api: Api,
    private models: ModelsStore,
    private jobs?: JobsStore,
  ) {
    this.offs.push(
      api.on('pull.progress', (e) => {
        const v = this.ensure(e.jobId, e.repo, e.revision);
        v.commit = e.commit;
        v.files = e.files;
        v.bytes = e.bytes;
        v.total = e.total;
      }),
      api.on('job.done', (e) => {
        if (e.method !== 'models.pull') return;
        const v = this.ensure(e.jobId);
        v.done = true;
        if (e.error) v.error = { code: e.error.code, message: e.error.message };
        if (e.result) {
          const r = e.result;
          v.result = r;
          v.commit = r.commit;
          v.files = r.files.map((f) => ({
            path: f.path,
            size: f.size,
            bytes: f.size,
            state: f.from === 'cache' ? 'cached' : 'done',
          }));
          v.total = v.bytes = r.totalBytes;
          void this.models.refresh().catch(() => {});
        }
      }),
    );
  }

  private ensure(jobId: string, repo = '', revision = ''): PullView {
    this.views[jobId] ??= {
      jobId,
      repo,
      revision,
      commit: null,
      files: [],
      bytes: 0,
      total: 0,
      done: false,
      result: null,
      error: null,
    };
    return this.views[jobId];
  }

  get current(): PullView | null {
    return this.currentId ? (this.views[this.currentId] ?? null) : null;
  }

  get running(): boolean {
    return Object.values(this.views).some((v) => !v.done);
  }

  /** Starts a download; its progress and outcome arrive as events. */
  async start(p: PullRequest): Promise<PullView> {
    const repo = p.repo.trim();
    const revision = p.revision?.trim() || 'main';
    const token = p.token?.trim();
    const { jobId } = await this.api.call('models.pull', { repo, revision, ...(token ? { token } : {}) });
    const v = this.ensure(jobId, repo, revision);
    v.repo = repo;
    v.revision = revision;
    this.currentId = jobId;
    this.jobs?.track(jobId, `Downloading ${repo}`);
    return v;
  }

  dispose(): void {
    for (const off of this.offs.splice(0)) off();
  }
}
