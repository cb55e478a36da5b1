import { fireEvent, render, screen, waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import ModuleTree from '../src/components/ModuleTree.svelte';
import Models from '../src/screens/Models.svelte';
import NewRun from '../src/screens/NewRun.svelte';
import Plugins from '../src/screens/Plugins.svelte';
import { createStudio, STUDIO_KEY } from '../src/lib/studio.js';
import type { TreeNode } from '../src/lib/types.js';
import { fakeApi, type FakeApi } from './fake-api.js';

const ctx = (api: FakeApi) => new Map<unknown, unknown>([[STUDIO_KEY, createStudio(api)]]);
const models = [
  {
    id: 1,
    name: 'tiny-llama',
    path: '/m',
    copied: false,
    modelType: 'llama',
    architecture: 'LlamaForCausalLM',
    fingerprint: 'f',
    params: 600000,
    addedAt: '',
  },
];
const datasets = [
  {
    id: 1,
    name: 'reviews',
    versions: [{ id: 5, digest: 'abcdef123456', task: 'classification', source: '', rows: null, createdAt: '' }],
  },
];

const leaf = (name: string, key: string, delta?: string[]): TreeNode => ({
  name,
  key,
  type: 'Linear',
  params: { weight: [4, 4] },
  count: 16,
  repeat: 1,
  children: [],
  ...(delta ? { delta } : {}),
});
function tree(deltaOn: string[]): TreeNode {
  const attn = ['q_proj', 'k_proj', 'v_proj'].map((k) =>
    leaf(`model.layers.0-1.self_attn.${k}`, k, deltaOn.includes(k) ? ['lora'] : undefined),
  );
  return {
    name: 'model',
    key: 'model',
    type: 'Module',
    params: {},
    count: 96,
    repeat: 1,
    children: [
      {
        name: 'model.layers',
        key: 'layers',
        type: 'ModuleList',
        params: {},
        count: 96,
        repeat: 1,
        children: [
          {
            name: 'model.layers.0-1',
            key: '0-1',
            type: 'Block',
            params: {},
            count: 96,
            repeat: 2,
            children: [
              {
                name: 'model.layers.0-1.self_attn',
                key: 'self_attn',
                type: 'Attention',
                params: {},
                count: 48,
                repeat: 1,
                children: attn,
              },
            ],
          },
        ],
      },
    ],
  };
}

describe('New run form', () => {
  const api = () =>
    fakeApi({
      'models.list': models,
      'datasets.list': datasets,
      'runs.estimate': {
        trainableParams: 14592,
        trainablePercent: 2.4,
        backboneParams: 607616,
        pluginBytes: 60000,
        memoryBytes: 50_000_000,
        memory: {},
        byMethod: {},
        device: 'cpu',
        steps: 150,
        tokens: 1,
        tokensPerSec: 1,
        secondsEstimate: 3.7,
        basis: 'default speed',
      },
      'runs.start': {
        error: { code: 'bad-params', message: 'runs.start: deltas.0: lora: rank 64 is larger than q_proj; use r ≤ 32' },
      },
      'runs.list': [],
    });

  it('blocks a bad learning rate with a message, and sends nothing', async () => {
    const a = api();
    render(NewRun, { context: ctx(a) });
    await waitFor(() => expect(screen.getByTestId('run-model').querySelectorAll('option').length).toBe(1));
    const lr = screen.getByTestId('field-lr') as HTMLInputElement;
    await fireEvent.input(lr, { target: { value: '20' } });
    await fireEvent.click(screen.getByTestId('run-start'));
    expect(await screen.findByText('Learning rate must be at most 10')).toBeTruthy();
    expect(lr.getAttribute('aria-invalid')).toBe('true');
    await fireEvent.input(lr, { target: { value: '-1' } });
    await fireEvent.click(screen.getByTestId('run-estimate'));
    expect(await screen.findByText('Learning rate must be greater than 0')).toBeTruthy();
    expect(a.calls.some((c) => c.method === 'runs.start' || c.method === 'runs.estimate')).toBe(false);
  });

  it('shows the estimate, and the engine error when starting still fails', async () => {
    const a = api();
    render(NewRun, { context: ctx(a) });
    await waitFor(() => expect(screen.getByTestId('run-dataset').querySelectorAll('option').length).toBe(1));
    await fireEvent.click(screen.getByTestId('run-estimate'));
    const est = await screen.findByTestId('estimate');
    expect(est.textContent).toContain('14,592');
    expect(est.textContent).toContain('2.40%');
    expect(screen.getByTestId('estimate-time').textContent).toContain('3.7 s');
    const sent = a.calls.find((c) => c.method === 'runs.estimate')!.params as Record<string, unknown>;
    expect(sent).toMatchObject({ modelId: 1, datasetVersionId: 5, lr: 0.001, deltas: [{ method: 'lora', r: 8 }] });
    await fireEvent.click(screen.getByTestId('run-start'));
    expect((await screen.findByRole('alert')).textContent).toContain('use r ≤ 32');
  });
});

describe('module tree', () => {
  it('highlights the modules a delta modifies, and only those', () => {
    render(ModuleTree, { props: { root: tree(['q_proj', 'v_proj']) } });
    const hits = screen
      .getAllByTestId('tree-node')
      .filter((n) => n.dataset.matched === 'true')
      .map((n) => n.dataset.name);
    expect(hits).toEqual(['model.layers.0-1.self_attn.q_proj', 'model.layers.0-1.self_attn.v_proj']);
    expect(screen.getByText('×2')).toBeTruthy();
  });

  it('Models screen re-asks the tree with the typed target_modules and highlights live', async () => {
    const a = fakeApi({
      'models.list': models,
      'models.tree': (p: Record<string, unknown>) => {
        const d = (p.deltas as { target_modules?: string | string[] }[])[0];
        const targets = d?.target_modules ? ([] as string[]).concat(d.target_modules) : ['q_proj', 'v_proj'];
        return {
          tree: {
            architecture: 'LlamaForCausalLM',
            modelType: 'llama',
            paramsTotal: 96,
            paramsNew: 0,
            root: tree(targets),
          },
          task: 'causal-lm',
          report: {
            matchedModules: targets.map((t) => ({ name: t, methods: ['lora'] })),
            trainableParams: 8 * targets.length,
            trainablePercent: targets.length,
            backboneParams: 96,
            pluginBytes: 100,
            estimatedTrainMemoryBytes: 1000,
            estimate: { batch: 8, seq: 128, weightsBytes: 0, optimizerBytes: 0, activationBytes: 0 },
            byMethod: {},
          },
        };
      },
    });
    render(Models, { props: { debounceMs: 5 }, context: ctx(a) });
    const matched = () =>
      screen
        .queryAllByTestId('tree-node')
        .filter((n) => n.dataset.matched === 'true')
        .map((n) => n.dataset.name!.split('.').at(-1));
    await waitFor(() => expect(matched()).toEqual(['q_proj', 'v_proj']));
    await fireEvent.input(screen.getByTestId('target-modules'), { target: { value: 'k_proj' } });
    await waitFor(() => expect(matched()).toEqual(['k_proj']));
    expect(screen.getByTestId('report-trainable').textContent).toContain('8');
    const last = a.calls.filter((c) => c.method === 'models.tree').at(-1)!.params as { deltas: unknown[] };
    expect(last.deltas).toEqual([{ method: 'lora', r: 8, alpha: 8, target_modules: 'k_proj' }]);
  });
});

describe('plugins screen', () => {
  it('export shows progress, then done with Show in folder', async () => {
    const version = {
      id: 1,
      plugin: 'sentiment',
      version: 1,
      file: 'f',
      sha256: 's',
      size: 60000,
      method: 'lora',
      methods: [],
      task: 'classification',
      labels: null,
      baseFingerprint: 'b',
      modelId: 1,
      runId: 'r1',
      source: 'run',
      metrics: {},
      trainableParams: 14592,
      notes: '',
      createdAt: 'today',
      tags: ['good'],
      exports: [],
    };
    const a = fakeApi({
      'plugins.list': [
        {
          name: 'sentiment',
          description: '',
          versions: 1,
          latest: 1,
          aliases: { latest: 1 },
          method: 'lora',
          task: 'classification',
        },
      ],
      'plugins.get': {
        name: 'sentiment',
        description: '',
        aliases: { latest: 1 },
        versions: [version],
        lineage: [
          {
            version: 1,
            model: null,
            dataset: { id: 1, dataset: 'reviews', digest: 'abcdef12' },
            run: { id: 'r1', status: 'finished', method: 'lora' },
          },
        ],
      },
      'plugins.export': { jobId: 'j9' },
      'plugins.showInFolder': {},
    });
    render(Plugins, { context: ctx(a) });
    await fireEvent.click(await screen.findByTestId('plugin-item'));
    expect((await screen.findByTestId('lineage')).textContent).toContain('reviews');
    await fireEvent.click(screen.getByTestId('export-peft'));
    await waitFor(() => expect(a.calls.some((c) => c.method === 'plugins.export')).toBe(true));
    expect(a.calls.find((c) => c.method === 'plugins.export')!.params).toEqual({ ref: 'sentiment@1', format: 'peft' });
    a.emit('job.progress', { jobId: 'j9', fraction: 0.4, message: 'writing adapter' });
    const bar = await screen.findByRole('progressbar');
    await waitFor(() => expect(bar.getAttribute('aria-valuenow')).toBe('40'));
    expect(screen.getByTestId('export-progress').textContent).toContain('writing adapter');
    a.emit('job.done', {
      jobId: 'j9',
      method: 'plugins.export',
      result: { id: 1, format: 'peft', path: '/out/sentiment-peft', files: [], bytes: 60000 },
    });
    const done = await screen.findByTestId('export-done');
    expect(done.textContent).toContain('/out/sentiment-peft');
    expect(screen.queryByTestId('export-progress')).toBeNull();
    await fireEvent.click(screen.getByText('Show in folder'));
    await waitFor(() =>
      expect(a.calls.at(-1)).toEqual({ method: 'plugins.showInFolder', params: { path: '/out/sentiment-peft' } }),
    );
  });
});
