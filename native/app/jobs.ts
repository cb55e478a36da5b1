// Long work started by a call (imports, exports, installs): the call answers {jobId} at once, and the work reports
// job.progress and one job.done (result or error) on the event stream.
import { randomBytes } from 'node:crypto';
import type { JobMethod, JobResults, JobStarted } from '../contract/index.js';
import { toApiError } from './errors.js';
import type { EventBus } from './events.js';

export type Progress = (fraction: number, message: string) => void;

export class Jobs {
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly bus: EventBus) {}

  start<M extends JobMethod>(method: M, work: (progress: Progress) => Promise<JobResults[M]>): JobStarted {
    const jobId = `job-${randomBytes(6).toString('hex')}`;
    const progress: Progress = (fraction, message) => this.bus.emit('job.progress', { jobId, fraction, message });
    // After the reply: the caller learns the id before any event names it.
    const p = new Promise<void>((r) => setImmediate(r))
      .then(() => work(progress))
      .then(
        (result) => this.bus.emit('job.done', { jobId, method, result } as never),
        (e: unknown) => {
          const { code, message } = toApiError(e);
          this.bus.emit('job.done', { jobId, method, error: { code, message } } as never);
        },
      );
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
    return { jobId };
  }

  /** Resolves when every job started so far has ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }
}
