// Runs: the list, and live views of runs (status, last progress, logs, chart series in typed arrays) fed by
// run.progress / run.eval / run.status / run.log events, and rebuilt after a reload from runs.get + runs.metrics.
import type { Api, Unsubscribe } from '../api.js';
import { Series } from '../series.js';
import type { Events, RunConfig, RunDetail, RunStatus, RunSummary } from '../types.js';

const MAX_LOG_LINES = 5000;

export class RunView {
  status = $state<RunStatus>('queued');
  reason = $state<string | null>(null);
  plugin = $state<{ name: string; version: number } | null>(null);
  progress = $state.raw<Events['run.progress'] | null>(null);
  detail = $state.raw<RunDetail | null>(null);
  latestEval = $state.raw<Record<string, number>>({});
  /** Bumped on every append: charts redraw from the series at most once per animation frame. */
  version = $state(0);
  logVersion = $state(0);
  readonly loss = new Series();
  readonly lr = new Series();
  readonly evals = new Map<string, Series>();
  readonly logs: string[] = [];

  constructor(readonly runId: string) {}

  evalSeries(key: string): Series {
    let s = this.evals.get(key);
    if (!s) this.evals.set(key, (s = new Series(64)));
    return s;
  }

  get evalKeys(): string[] {
    void this.version;
    return [...this.evals.keys()];
  }
}

export class RunsStore {
  list = $state.raw<RunSummary[]>([]);
  loading = $state(false);
  private views = new Map<string, RunView>();
  private offs: Unsubscribe[] = [];

  constructor(private api: Api) {
    this.offs.push(
      api.on('run.progress', (e) => {
        const v = this.views.get(e.runId);
        if (!v) return;
        v.loss.push(e.step, e.loss);
        v.lr.push(e.step, e.lr);
        v.progress = e;
        if (v.status === 'queued' || v.status === 'interrupted') v.status = 'running';
        v.version++;
      }),
      api.on('run.eval', (e) => {
        const v = this.views.get(e.runId);
        if (!v) return;
        for (const [k, val] of Object.entries(e.metrics)) v.evalSeries(k).push(e.step, val);
        v.latestEval = { ...v.latestEval, ...e.metrics };
        v.version++;
      }),
      api.on('run.status', (e) => {
        const v = this.views.get(e.runId);
        if (v) {
          v.status = e.status;
          v.reason = e.reason ?? null;
          if (e.plugin) v.plugin = e.plugin;
        }
        const i = this.list.findIndex((r) => r.id === e.runId);
        if (i >= 0)
          this.list = this.list.map((r, j) => (j === i ? { ...r, status: e.status, reason: e.reason ?? r.reason } : r));
        else void this.refresh();
      }),
      api.on('run.log', (e) => {
        const v = this.views.get(e.runId);
        if (!v) return;
        v.logs.push(e.line);
        if (v.logs.length > MAX_LOG_LINES) v.logs.splice(0, v.logs.length - MAX_LOG_LINES);
        v.logVersion++;
      }),
    );
  }

  async refresh(): Promise<void> {
    this.loading = true;
    try {
      this.list = await this.api.call('runs.list', {});
    } finally {
      this.loading = false;
    }
  }

  /** The live view of a run; `load` fills it from the record (status and every metric series so far). */
  view(runId: string): RunView {
    let v = this.views.get(runId);
    if (!v) this.views.set(runId, (v = new RunView(runId)));
    return v;
  }

  async load(runId: string): Promise<RunView> {
    const v = this.view(runId);
    const detail = await this.api.call('runs.get', { runId });
    v.detail = detail;
    v.status = detail.run.status;
    v.reason = detail.run.reason;
    v.plugin = detail.plugin;
    const { series } = await this.api.call('runs.metrics', { runId });
    v.loss.clear();
    v.lr.clear();
    v.evals.clear();
    const latest: Record<string, number> = {};
    for (const [key, points] of Object.entries(series)) {
      const target =
        key === 'train/loss'
          ? v.loss
          : key === 'train/lr'
            ? v.lr
            : key.startsWith('eval/')
              ? v.evalSeries(key.slice(5))
              : null;
      if (!target) continue;
      for (const p of points) target.push(p.step, p.nan ? NaN : p.value);
      if (key.startsWith('eval/') && points.length) latest[key.slice(5)] = points[points.length - 1].value ?? NaN;
    }
    v.latestEval = latest;
    // The log so far, from the run's folder (lines that arrive later come as run.log events).
    const { lines } = await this.api.call('runs.log', { runId, tail: MAX_LOG_LINES });
    v.logs.splice(0, v.logs.length, ...lines);
    v.logVersion++;
    v.version++;
    return v;
  }

  async start(config: RunConfig): Promise<string> {
    const { runId } = await this.api.call('runs.start', config);
    this.view(runId).status = 'queued';
    void this.refresh();
    return runId;
  }

  async control(runId: string, action: 'pause' | 'resume' | 'cancel'): Promise<void> {
    const r = await this.api.call(`runs.${action}`, { runId });
    this.view(runId).status = r.status;
  }

  dispose(): void {
    for (const off of this.offs.splice(0)) off();
  }
}
