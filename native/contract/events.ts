// Events the engine pushes to every connected UI (and the CLI prints): runs' lives and long jobs' progress.
import type { ApiError } from './errors.js';
import type { JobMethod, JobResults } from './methods.js';
import type { HubPullProgress, PluginRef } from './types.js';
import type { RunStatus } from './vocabulary.js';

/** job.done, typed by the method that started the job. */
export type JobDone = {
  [M in JobMethod]: { jobId: string; method: M; result?: JobResults[M]; error?: Pick<ApiError, 'code' | 'message'> };
}[JobMethod];

export interface Events {
  'run.status': { runId: string; status: RunStatus; reason?: string | null; plugin?: PluginRef | null };
  /** The trainer has built its graphs and is about to take its first step. */
  'run.started': {
    runId: string;
    device: 'cpu' | 'cuda';
    /** Why CUDA was not used although asked for (auto), if so. */
    fallbackReason: string | null;
    trainableParams: number;
    totalSteps: number;
    /** The step a resumed run continues after (null for a fresh run). */
    resumedFrom: number | null;
  };
  'run.progress': {
    runId: string;
    step: number;
    totalSteps: number;
    epoch: number;
    loss: number;
    lr: number;
    gradNorm: number;
    tokensPerSec: number;
    etaSeconds: number;
    rssBytes: number;
  };
  'run.eval': { runId: string; step: number; metrics: Record<string, number> };
  'run.log': { runId: string; line: string };
  'job.progress': { jobId: string; fraction: number; message: string };
  'job.done': JobDone;
  /** A models.pull job's files, each with its bytes so far (job.progress carries the total too). */
  'pull.progress': HubPullProgress & { jobId: string };
  /** Tokens of a playground.chat reply as they come (a batch a few times a second), per side. */
  'playground.token': {
    streamId: string;
    side: 'plugins' | 'base';
    /** What is new since the last event of this side. */
    delta: string;
    /** The reply so far. */
    text: string;
    tokens: number;
    /** The side's last event: why it stopped (its end-of-turn marker or eos, or the token limit). */
    stopped?: 'stop' | 'length';
  };
}
export type EventName = keyof Events;
export const EVENT_NAMES: EventName[] = [
  'run.status',
  'run.started',
  'run.progress',
  'run.eval',
  'run.log',
  'job.progress',
  'job.done',
  'pull.progress',
  'playground.token',
];
