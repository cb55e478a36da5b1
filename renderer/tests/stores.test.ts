import { describe, expect, it } from 'vitest';
import { JobsStore } from '../src/lib/stores/jobs.svelte.js';
import { RunsStore } from '../src/lib/stores/runs.svelte.js';
import { Series } from '../src/lib/series.js';
import { fakeApi } from './fake-api.js';

const progress = (runId: string, step: number, loss: number) => ({
  runId,
  step,
  totalSteps: 100,
  epoch: 0,
  loss,
  lr: 1e-3,
  gradNorm: 1,
  tokensPerSec: 10,
  etaSeconds: 5,
  rssBytes: 1,
});

describe('runs store', () => {
  it('appends progress events into typed-array series and follows status', () => {
    const api = fakeApi({ 'runs.list': [] });
    const runs = new RunsStore(api);
    const v = runs.view('r1');
    for (let s = 1; s <= 3000; s++) api.emit('run.progress', progress('r1', s, 1 / s));
    api.emit('run.progress', progress('other', 1, 9));
    expect(v.loss.length).toBe(3000);
    expect(v.loss.xs).toBeInstanceOf(Float64Array);
    expect(v.loss.xs[2999]).toBe(3000);
    expect(v.loss.ys[1]).toBeCloseTo(0.5);
    expect(v.status).toBe('running');
    expect(v.version).toBe(3000);
    api.emit('run.eval', { runId: 'r1', step: 100, metrics: { accuracy: 0.9 } });
    expect(v.evals.get('accuracy')!.ys[0]).toBeCloseTo(0.9);
    expect(v.latestEval.accuracy).toBeCloseTo(0.9);
    api.emit('run.status', { runId: 'r1', status: 'finished', plugin: { name: 'p', version: 2 } });
    expect(v.status).toBe('finished');
    expect(v.plugin).toEqual({ name: 'p', version: 2 });
    api.emit('run.log', { runId: 'r1', line: 'hello' });
    expect(v.logs).toEqual(['hello']);
  });

  it('rebuilds a run after a reload from runs.get + runs.metrics + runs.log', async () => {
    const api = fakeApi({
      'runs.list': [],
      'runs.get': {
        run: { id: 'r2', status: 'paused', reason: null },
        config: {},
        metricKeys: [],
        latest: {},
        plugin: null,
        queuePosition: null,
      },
      'runs.metrics': {
        runId: 'r2',
        series: {
          'train/loss': [
            { step: 1, value: 2, nan: false },
            { step: 2, value: null, nan: true },
          ],
          'eval/accuracy': [{ step: 2, value: 0.5, nan: false }],
          'train/grad_norm': [{ step: 1, value: 3, nan: false }],
        },
      },
      'runs.log': { lines: ['t0 status running', 't1 step 1/2 epoch 0 loss 2.0000'] },
    });
    const runs = new RunsStore(api);
    const v = await runs.load('r2');
    expect(v.status).toBe('paused');
    expect(v.loss.length).toBe(2);
    expect(Number.isNaN(v.loss.ys[1])).toBe(true);
    expect(v.evalKeys).toEqual(['accuracy']);
    expect(v.latestEval).toEqual({ accuracy: 0.5 });
    expect(v.logs).toEqual(['t0 status running', 't1 step 1/2 epoch 0 loss 2.0000']);
  });

  it('control calls set the returned status', async () => {
    const api = fakeApi({ 'runs.pause': (p: Record<string, unknown>) => ({ runId: p.runId, status: 'paused' }) });
    const runs = new RunsStore(api);
    await runs.control('r3', 'pause');
    expect(runs.view('r3').status).toBe('paused');
    expect(api.calls.at(-1)).toEqual({ method: 'runs.pause', params: { runId: 'r3' } });
  });
});

describe('series', () => {
  it('grows and replaces repeated steps (a resumed run)', () => {
    const s = new Series(2);
    for (let i = 1; i <= 10; i++) s.push(i, i);
    s.push(8, 80);
    expect(s.length).toBe(8);
    expect(s.ys[7]).toBe(80);
  });
});

describe('jobs store', () => {
  it('tracks progress and resolves wait on done', async () => {
    const api = fakeApi();
    const jobs = new JobsStore(api);
    jobs.track('j', 'Import');
    const done = jobs.wait('j');
    api.emit('job.progress', { jobId: 'j', fraction: 0.5, message: 'half' });
    expect(jobs.jobs.j.fraction).toBe(0.5);
    expect(jobs.active.length).toBe(1);
    const result = { dir: '/d', files: [], sha256: 'ab', activation: { activated: true } };
    api.emit('job.done', { jobId: 'j', method: 'system.installCuda', result });
    expect((await done).result).toEqual(result);
    expect(jobs.active.length).toBe(0);
  });
});
