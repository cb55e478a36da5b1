// Models: recording a Hugging Face folder (referenced in place, or copied into the workspace), pulling one by name
// from the Hugging Face Hub into its cache, listing them, and the module tree with what a delta config would modify
// and cost.
import { resolve } from 'node:path';
import {
  badParams,
  conflict,
  ContractError,
  notFound,
  type DeltaConfigInput,
  type HubPullProgress,
  type JobStarted,
  type Model,
  type ModelPulled,
  type ModelTreeResult,
  type TaskName,
} from '../contract/index.js';
import { HubError, pullModel } from '../hub/pull.js';
import type { Env } from '../hub/settings.js';
import { loadWithDeltas } from '../delta/index.js';
import { deltaReport } from '../delta/report.js';
import { loadModel } from '../models/index.js';
import { moduleTree } from '../models/tree.js';
import type { Workspace } from '../store/workspace.js';
import { toDeltaReport, toModel, toModelTree } from './dto.js';
import type { EventBus } from './events.js';
import type { Jobs } from './jobs.js';
import { runDeltas } from './runs.js';
import { headTask, taskName } from './tasks.js';

/** How the app reaches the Hub: the environment it reads (HF_HOME, HF_ENDPOINT, HF_TOKEN, …) and its fetch. */
export interface HubOptions {
  env?: Env;
  fetch?: typeof fetch;
  /** The first wait before continuing a file after a network error (ms). */
  retryDelayMs?: number;
}

export interface PullParams {
  repo: string;
  revision?: string;
  /** Used for this download only: never stored, logged or put in a message. */
  token?: string;
  /** The model's name in the workspace (default "org/name", with "@revision" unless main). */
  name?: string;
}

/** A Hub failure as the contract's error: the message already says what to do. */
function pullError(e: unknown): unknown {
  if (e instanceof HubError) {
    if (e.kind === 'bad-input') return badParams(e.message);
    if (e.kind === 'not-found') return notFound(e.message);
    if (e.kind === 'busy') return conflict(e.message);
    return new ContractError({ code: 'failed', message: e.message });
  }
  if (e instanceof Error && e.name === 'AbortError')
    return new ContractError({
      code: 'failed',
      message: 'the download stopped as the app closed: pull again to continue where it stopped',
    });
  return e;
}

export class Models {
  /** Pulls under way, by repo@revision: a second one of the same waits its turn. */
  private readonly pulls = new Map<string, AbortController>();

  constructor(
    private readonly need: () => Workspace,
    private readonly jobs?: Jobs,
    private readonly bus?: EventBus,
    private readonly hub: HubOptions = {},
  ) {}

  import(p: { path: string; copy?: boolean; name?: string }): Model {
    const ws = this.need();
    const row = ws.addModel(resolve(p.path), { copy: p.copy, name: p.name });
    return toModel(row, ws.modelPath(row));
  }

  /**
   * Downloads a model from the Hugging Face Hub into its cache (or finds it there) and records its snapshot folder,
   * read in place; `onProgress` sees every file.
   */
  async pull(p: PullParams, onProgress?: (e: HubPullProgress) => void): Promise<ModelPulled> {
    this.need();
    const revision = p.revision ?? 'main';
    const key = `${p.repo}@${revision}`;
    if (this.pulls.has(key)) throw conflict(`${key} is already downloading: wait for it to finish`);
    const stop = new AbortController();
    this.pulls.set(key, stop);
    try {
      const r = await pullModel({
        repo: p.repo,
        revision,
        token: p.token,
        env: this.hub.env,
        fetch: this.hub.fetch,
        retryDelayMs: this.hub.retryDelayMs,
        onProgress,
        signal: stop.signal,
      });
      let model: Model;
      try {
        model = this.import({ path: r.snapshot, name: p.name ?? (revision === 'main' ? p.repo : key) });
      } catch (e) {
        throw new Error(`${key} is downloaded (${r.snapshot}) but cannot be recorded: ${(e as Error).message}`, {
          cause: e,
        });
      }
      return { ...r, model };
    } catch (e) {
      throw pullError(e);
    } finally {
      this.pulls.delete(key);
    }
  }

  /** models.pull as a job: job.progress carries the total, pull.progress every file. */
  startPull(p: PullParams): JobStarted {
    this.need();
    if (!this.jobs || !this.bus) throw conflict('downloads run as jobs, and this application has none');
    const { jobs, bus } = this;
    const started = jobs.start('models.pull', (progress) =>
      this.pull(p, (e) => {
        const done = e.files.filter((f) => f.state === 'done' || f.state === 'cached').length;
        const now = e.files.find((f) => f.state === 'downloading' || f.state === 'checking');
        progress(e.total ? e.bytes / e.total : 0, `${now ? `${now.path}, ` : ''}${done} of ${e.files.length} files`);
        bus.emit('pull.progress', { jobId: started.jobId, ...e });
      }),
    );
    return started;
  }

  /** Stops the pulls under way (the app closes); what they downloaded stays, and the next pull continues it. */
  stopPulls(): void {
    for (const stop of this.pulls.values()) stop.abort();
  }

  list(): Model[] {
    const ws = this.need();
    return ws.listModels().map((m) => toModel(m, ws.modelPath(m)));
  }

  /** The folder a recorded model is read from. */
  folder(modelId: number): string {
    const ws = this.need();
    return ws.modelPath(ws.getModel(modelId));
  }

  tree(p: {
    modelId: number;
    task?: TaskName;
    numLabels?: number;
    deltas?: DeltaConfigInput[];
    batch?: number;
    seq?: number;
  }): ModelTreeResult {
    const dir = this.folder(p.modelId);
    const opts = { task: p.task && headTask(p.task), numLabels: p.numLabels };
    if (p.deltas?.length) {
      const { model, applied } = loadWithDeltas(dir, opts, runDeltas(p.deltas));
      const report = deltaReport(model, applied, { batch: p.batch ?? 8, seq: p.seq ?? 128 });
      return {
        tree: toModelTree(moduleTree(model, applied.marked)),
        task: taskName(model.task),
        report: toDeltaReport(report),
      };
    }
    const model = loadModel(dir, opts);
    return { tree: toModelTree(moduleTree(model)), task: taskName(model.task), report: null };
  }
}
