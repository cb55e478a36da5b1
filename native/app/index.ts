// The application: every use case of a workspace — open or create it, import models and datasets, create, queue,
// run, pause, resume and cancel runs, estimate them, register, use and export plugins — in one place, with the
// contract's types. The front ends are thin over it: the CLI (native/cli), the service behind Electron IPC and
// `delta-studio serve` (native/api), and the demo.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  conflict,
  notFound,
  type AppInfo,
  type CheckReport,
  type RecentWorkspace,
  type WorkspaceInfo,
} from '../contract/index.js';
import { checkWorkspace } from '../store/check.js';
import { Workspace } from '../store/workspace.js';
import { Datasets } from './datasets.js';
import { EventBus } from './events.js';
import { Exports } from './exports.js';
import { Jobs } from './jobs.js';
import { Models, type HubOptions } from './models.js';
import { Playground } from './playground.js';
import { Plugins } from './plugins.js';
import { RecentWorkspaces } from './recent.js';
import { attachRunLog } from './run-log.js';
import { RunQueue } from './run-queue.js';
import type { StartTrainer } from './run-recorder.js';
import { Runs, type DefaultSpeeds } from './runs.js';
import { System } from './system.js';

export interface ApplicationOptions {
  /** Per-user folder for the app's own state (recent workspaces); none: nothing is remembered. */
  stateDir?: string;
  /** Where the CUDA provider is downloaded to (default: stateDir). */
  dataDir?: string;
  transport?: AppInfo['transport'];
  /** A workspace to open (created when it does not exist yet). */
  workspace?: string;
  /** The desktop shell's "show in folder". */
  showInFolder?: (path: string) => void;
  /** Starts the trainer (Electron: a utilityProcess); default: a Node child process. */
  startTrainer?: StartTrainer;
  /** At most this often (ms) a run's progress metrics are written (default 1000). */
  flushMs?: number;
  /** Training speeds assumed by estimates before a run on the device measured one. */
  defaultTokensPerSec?: DefaultSpeeds;
  /** How models are pulled from the Hugging Face Hub (default: this process's environment and fetch). */
  hub?: HubOptions;
}

function appVersion(): string {
  try {
    const pkg = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
    return (JSON.parse(pkg) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

export class Application {
  readonly events = new EventBus();
  readonly jobs = new Jobs(this.events);
  readonly queue: RunQueue;
  readonly models: Models;
  readonly datasets: Datasets;
  readonly runs: Runs;
  readonly plugins: Plugins;
  readonly exports: Exports;
  readonly playground: Playground;
  readonly system: System;
  private ws: Workspace | null = null;
  private readonly recents: RecentWorkspaces;
  private readonly detachLog: () => void;
  private closed = false;

  constructor(private readonly opts: ApplicationOptions = {}) {
    const need = (): Workspace => {
      if (this.closed) throw conflict('the application is closed');
      if (!this.ws)
        throw conflict('no workspace is open: create or open one first (workspace.create / workspace.open)');
      return this.ws;
    };
    this.recents = new RecentWorkspaces(opts.stateDir);
    this.queue = new RunQueue(this.events, () => this.ws, {
      startTrainer: opts.startTrainer,
      flushMs: opts.flushMs,
    });
    this.models = new Models(need, this.jobs, this.events, opts.hub);
    this.datasets = new Datasets(need);
    this.runs = new Runs(need, this.queue, this.events, opts.defaultTokensPerSec);
    this.plugins = new Plugins(need, opts.showInFolder);
    this.exports = new Exports(need);
    this.playground = new Playground(need);
    this.system = new System(opts.dataDir ?? opts.stateDir ?? '.');
    this.detachLog = attachRunLog(this.events, () => this.ws);
    if (opts.workspace) this.useWorkspace(opts.workspace, true);
  }

  /** The open workspace, or a conflict saying to open one. */
  workspaceOrFail(): Workspace {
    if (!this.ws) throw conflict('no workspace is open: create or open one first (workspace.create / workspace.open)');
    return this.ws;
  }

  /** The open workspace (null before one is opened). */
  get workspace(): Workspace | null {
    return this.ws;
  }

  info(): AppInfo {
    return {
      version: appVersion(),
      transport: this.opts.transport ?? 'http',
      workspace: this.ws?.dir ?? null,
      recent: this.recents.list(),
    };
  }

  recent(): RecentWorkspace[] {
    return this.recents.list();
  }

  /** Opens a workspace (creating it when `create` and it is not one yet); refused while runs train in another. */
  async open(dir: string, create: boolean): Promise<WorkspaceInfo> {
    const abs = resolve(dir);
    if (this.queue.busy) {
      if (this.ws && resolve(this.ws.dir) === abs) return this.describe(this.ws, []);
      throw conflict(
        `a run is training or queued in ${this.ws?.dir}: wait for it, or cancel it, before switching workspaces`,
      );
    }
    const { ws, interrupted } = this.openFolder(abs, create);
    await this.playground.close();
    this.ws?.close();
    this.ws = ws;
    this.recents.remember(ws.dir);
    return this.describe(ws, interrupted);
  }

  private openFolder(abs: string, create: boolean): { ws: Workspace; interrupted: string[] } {
    const ws = create && !existsSync(join(abs, 'workspace.db')) ? Workspace.init(abs) : Workspace.open(abs);
    return { ws, interrupted: ws.listRuns({ status: 'interrupted' }).map((r) => r.id) };
  }

  private useWorkspace(dir: string, create: boolean): void {
    this.ws = this.openFolder(resolve(dir), create).ws;
    this.recents.remember(this.ws.dir);
  }

  private describe(w: Workspace, interrupted: string[]): WorkspaceInfo {
    return {
      path: w.dir,
      schemaVersion: Workspace.latestSchema,
      interrupted,
      counts: {
        models: w.listModels().length,
        datasets: w.listDatasets().length,
        runs: w.listRuns().length,
        plugins: w.listPlugins().length,
      },
    };
  }

  /** Checks a workspace (the open one, or one that failed to open) and repairs what is safe. */
  check(path: string | undefined, repair: boolean): CheckReport {
    const dir = path ?? this.ws?.dir;
    if (!dir) throw conflict('no workspace is open: name the folder to check');
    // A folder that never was a workspace has nothing to check (and nothing to repair).
    if (!existsSync(join(dir, 'workspace.db')))
      throw notFound(
        `${resolve(dir)} is not a Delta Studio workspace (it has no workspace.db): there is nothing to check`,
      );
    return checkWorkspace(dir, { repair });
  }

  /**
   * Closes: the training run stops after its step and, like the queued ones, is recorded as interrupted (not
   * cancelled: nobody chose to stop it), so it can be resumed; jobs finish; sessions and the database close.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stopped = await this.queue.close();
    this.models.stopPulls();
    await this.jobs.settled();
    for (const id of stopped) {
      try {
        if (this.ws && ['queued', 'cancelled'].includes(this.ws.getRun(id).status))
          this.ws.setRunStatus(id, 'interrupted', 'the app was closed during the run; resume it');
      } catch {
        /* the store is what it is; check reports the rest */
      }
    }
    await this.playground.close();
    this.detachLog();
    this.ws?.close();
    this.ws = null;
    this.events.clear();
  }
}

export type { RunOutcome } from './run-queue.js';
export type { StartTrainer } from './run-recorder.js';
export { RUN_FILE, readRunFile, writeRunFile, type RunFile } from './run-file.js';
