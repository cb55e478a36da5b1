// The trainer's queue: one run trains at a time (one GPU, one process), the others wait in order. It starts each
// run's trainer through the recorder, relays the trainer's events as the contract's, and lets callers pause, resume,
// cancel, or wait for a run's outcome.
import { conflict } from '../contract/index.js';
import { nvidiaGpuPresent } from '../runtime/providers.js';
import type { RunStatus } from '../contract/index.js';
import type { TrainEvent, TrainResult } from '../train/trainer.js';
import type { PluginVersionRow, Workspace } from '../store/workspace.js';
import type { EventBus } from './events.js';
import { readRunFile } from './run-file.js';
import { recordRun, runFailure, type RecordedRun, type StartTrainer } from './run-recorder.js';

/** How a run ended, as recorded. */
export interface RunOutcome {
  runId: string;
  status: RunStatus;
  reason: string | null;
  /** The trainer's own account (absent when it never ran or died). */
  result?: TrainResult;
  plugin?: PluginVersionRow;
}

export interface RunQueueOptions {
  startTrainer?: StartTrainer;
  /** At most this often (ms) progress metrics are written (default 1000). */
  flushMs?: number;
}

export class RunQueue {
  private readonly waiting: string[] = [];
  private training: { runId: string; recorded: RecordedRun } | null = null;
  private readonly outcomes = new Map<string, ((o: RunOutcome) => void)[]>();
  /** How runs ended, for a caller that asks after the end (a run can fail as it is queued). */
  private readonly ended = new Map<string, RunOutcome>();
  private readonly running = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    private readonly bus: EventBus,
    private readonly workspace: () => Workspace | null,
    private readonly opts: RunQueueOptions = {},
  ) {}

  /** The run training now, if any. */
  get current(): string | null {
    return this.training?.runId ?? null;
  }

  /** Whether anything is training or waiting. */
  get busy(): boolean {
    return this.training !== null || this.waiting.length > 0;
  }

  /** 0 = training now; n = n runs ahead of it; null = not in the queue. */
  position(runId: string): number | null {
    if (this.training?.runId === runId) return 0;
    const i = this.waiting.indexOf(runId);
    return i < 0 ? null : i + (this.training ? 1 : 0);
  }

  /** Queues a recorded run (status queued); it starts when the trainer is free. Returns its position. */
  enqueue(runId: string): number {
    this.ended.delete(runId);
    this.waiting.push(runId);
    this.bus.emit('run.status', { runId, status: 'queued' });
    this.pump();
    return this.position(runId) ?? 0;
  }

  /** Resolves when the run has ended and been recorded. */
  outcome(runId: string): Promise<RunOutcome> {
    const ended = this.ended.get(runId);
    if (ended) return Promise.resolve(ended);
    return new Promise((resolve) => {
      const list = this.outcomes.get(runId) ?? [];
      list.push(resolve);
      this.outcomes.set(runId, list);
    });
  }

  pause(runId: string, status: RunStatus): void {
    if (this.training?.runId !== runId)
      throw conflict(`run ${runId} is ${status}, not training: only the run training now can be paused`);
    this.training.recorded.job.pause();
  }

  /** Resumes the run training now (true), or says it is not the one training (false). */
  resumeCurrent(runId: string): boolean {
    if (this.training?.runId !== runId) return false;
    this.training.recorded.job.resume();
    return true;
  }

  /** Drops a waiting run (true), or asks the training one to stop after its step (false); else a conflict. */
  cancel(runId: string, status: RunStatus): boolean {
    const i = this.waiting.indexOf(runId);
    if (i >= 0) {
      this.waiting.splice(i, 1);
      this.settle({ runId, status: 'cancelled', reason: 'cancelled before it started' });
      return true;
    }
    if (this.training?.runId !== runId) throw conflict(`run ${runId} is ${status}: it is neither training nor queued`);
    // A paused trainer must step once more to see the cancel.
    this.training.recorded.job.cancel();
    this.training.recorded.job.resume();
    return false;
  }

  /**
   * Stops: the waiting runs are dropped and the training one stops after its step. Returns the ids of every run it
   * stopped (the caller records them as interrupted: nobody chose to stop them).
   */
  async close(): Promise<string[]> {
    this.closed = true;
    const stopped = [...this.waiting, ...(this.training ? [this.training.runId] : [])];
    this.waiting.length = 0;
    if (this.training) {
      this.training.recorded.job.cancel();
      this.training.recorded.job.resume();
    }
    await Promise.allSettled([...this.running]);
    return stopped;
  }

  private settle(o: RunOutcome): void {
    this.ended.set(o.runId, o);
    for (const resolve of this.outcomes.get(o.runId) ?? []) resolve(o);
    this.outcomes.delete(o.runId);
  }

  private relay(runId: string): (e: TrainEvent) => void {
    let totalSteps = 0;
    return (e) => {
      if (e.type === 'start') {
        totalSteps = e.totalSteps;
        this.bus.emit('run.started', {
          runId,
          device: e.device === 'cuda' ? 'cuda' : 'cpu',
          fallbackReason: e.fallbackReason ?? null,
          trainableParams: e.trainable,
          totalSteps: e.totalSteps,
          resumedFrom: e.resumedFrom ?? null,
        });
        this.bus.emit('run.status', {
          runId,
          status: 'running',
          // On a machine without an NVIDIA GPU the CPU is simply the device: nothing to explain on every run.
          reason: e.fallbackReason && nvidiaGpuPresent() ? `CUDA not used: ${e.fallbackReason}` : null,
        });
      } else if (e.type === 'progress') {
        const { step, epoch, loss, lr, gradNorm, tokensPerSec, etaSeconds, rssBytes } = e;
        this.bus.emit('run.progress', {
          runId,
          step,
          totalSteps,
          epoch,
          loss,
          lr,
          gradNorm,
          tokensPerSec,
          etaSeconds,
          rssBytes,
        });
      } else if (e.type === 'eval') this.bus.emit('run.eval', { runId, step: e.step, metrics: e.metrics });
      else if (e.type === 'paused') this.bus.emit('run.status', { runId, status: 'paused' });
      else if (e.type === 'resumed') this.bus.emit('run.status', { runId, status: 'running' });
    };
  }

  /** Starts the next waiting run when the trainer is free. */
  private pump(): void {
    const ws = this.workspace();
    if (this.training || this.closed || !ws) return;
    const runId = this.waiting.shift();
    if (runId === undefined) return;
    let recorded: RecordedRun;
    try {
      const run = readRunFile(ws.path(ws.getRun(runId).dir));
      recorded = recordRun(ws, run, this.relay(runId), this.opts);
    } catch (e) {
      const reason = runFailure(ws, e);
      try {
        ws.finishRun(runId, { status: 'failed', steps: ws.getRun(runId).steps, reason });
      } catch {
        /* the event below still tells the UI */
      }
      this.bus.emit('run.status', { runId, status: 'failed', reason });
      this.settle({ runId, status: 'failed', reason });
      this.pump();
      return;
    }
    this.training = { runId, recorded };
    const p = recorded.done
      .then(({ status, reason, result, plugin }) => {
        this.training = null; // before anyone hears of the end: a caller may close the queue at once
        const pluginRef = plugin ? { name: plugin.plugin, version: plugin.version } : null;
        try {
          this.bus.emit('run.status', { runId, status, reason, plugin: pluginRef });
        } catch {
          /* a listener's failure does not change how the run ended */
        }
        this.settle({ runId, status, reason, result, plugin });
      })
      .finally(() => {
        this.training = null;
        this.pump();
      });
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }
}
