import { render, screen, waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import App from '../src/App.svelte';
import { createStudio } from '../src/lib/studio.js';
import { fakeApi } from './fake-api.js';

describe('app shell', () => {
  it('renders every screen from the nav without errors', async () => {
    const api = fakeApi({
      'app.info': { version: '0.1.0', transport: 'http', workspace: '/ws', recent: [] },
      'workspace.recent': [{ path: '/ws', openedAt: 'now', exists: true }],
      'models.list': [],
      'datasets.list': [],
      'runs.list': [{ id: 'r1', name: 'first', status: 'finished', method: 'lora' }],
      'plugins.list': [],
      'runs.get': {
        run: { id: 'r1', status: 'finished', reason: null, name: 'first' },
        config: {},
        metricKeys: [],
        latest: {},
        plugin: null,
        queuePosition: null,
      },
      'runs.metrics': { runId: 'r1', series: { 'train/loss': [{ step: 1, value: 1, nan: false }] } },
      'runs.log': { lines: [] },
    });
    render(App, { props: { studio: createStudio(api) } });
    expect(await screen.findByTestId('recent-item')).toBeTruthy();
    for (const id of ['models', 'datasets', 'new-run', 'runs/r1', 'compare', 'plugins', 'playground', 'workspaces']) {
      location.hash = `#/${id}`;
      window.dispatchEvent(new HashChangeEvent('hashchange'));
      await waitFor(() =>
        expect(document.querySelector('h1')?.textContent?.toLowerCase().replace(' / sweep', '').replace(' ', '-')).toBe(
          id.split('/')[0],
        ),
      );
    }
    location.hash = '#/runs/r1';
    window.dispatchEvent(new HashChangeEvent('hashchange'));
    expect((await screen.findByTestId('run-status')).textContent).toBe('finished');
  });
});
