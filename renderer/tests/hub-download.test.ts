// "Download from Hugging Face" on the Models screen: the form checks the name as the engine will, sends the token with
// the request only, shows every file's progress and the total from pull.progress, the model once job.done says so,
// and an error's own words (which say what to do).
import { fireEvent, render, screen, waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import Models from '../src/screens/Models.svelte';
import { createStudio, STUDIO_KEY, type Studio } from '../src/lib/studio.js';
import { pullProblem } from '../src/lib/stores/pulls.svelte.js';
import type { Events, HubFileProgress, Model } from '../src/lib/types.js';
import { fakeApi, type FakeApi } from './fake-api.js';

const model: Model = {
  id: 7,
  name: 'tiny/llama',
  path: '/hf/hub/models--tiny--llama/snapshots/abc',
  copied: false,
  modelType: 'llama',
  architecture: 'LlamaForCausalLM',
  fingerprint: 'f',
  params: 600_000,
  addedAt: '',
};
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const TOKEN = 'hf_secretTokenForTheTest';

function setup(): { api: FakeApi; studio: Studio; listed: Model[] } {
  const listed: Model[] = [];
  const api = fakeApi({
    'models.list': () => [...listed],
    'models.pull': () => ({ jobId: 'job-1' }),
    'models.tree': { error: { code: 'not-found', message: 'no tree in this test' } },
  });
  const studio = createStudio(api);
  studio.workspace.info = { version: '0', transport: 'http', workspace: '/ws', recent: [] };
  render(Models, { props: { debounceMs: 5 }, context: new Map<unknown, unknown>([[STUDIO_KEY, studio]]) });
  return { api, studio, listed };
}

const file = (path: string, size: number, bytes: number, state: HubFileProgress['state']): HubFileProgress => ({
  path,
  size,
  bytes,
  state,
});
const progress = (files: HubFileProgress[]): Events['pull.progress'] => ({
  jobId: 'job-1',
  repo: 'tiny/llama',
  revision: 'main',
  commit: COMMIT,
  files,
  bytes: files.reduce((a, f) => a + f.bytes, 0),
  total: files.reduce((a, f) => a + f.size, 0),
  fetched: 0,
});

describe('Download from Hugging Face', () => {
  it('checks the name and revision with the contract’s patterns', () => {
    expect(pullProblem({ repo: 'Qwen/Qwen2.5-0.5B-Instruct' })).toBeNull();
    expect(pullProblem({ repo: 'gpt2', revision: 'refs/pr/3' })).toBeNull();
    expect(pullProblem({ repo: '../etc' })).toMatch(/org\/name/);
    expect(pullProblem({ repo: 'a/b', revision: 'a..b' })).toMatch(/revision/);
  });

  it('sends the token with the request only, and shows every file and the total as they arrive', async () => {
    const { api, studio, listed } = setup();
    const submit = screen.getByTestId('hub-download-submit') as HTMLButtonElement;
    await fireEvent.input(screen.getByTestId('hub-repo'), { target: { value: 'not a name' } });
    expect(submit.disabled).toBe(true);
    expect(screen.getByText(/A model on the Hub is named org\/name/)).toBeTruthy();
    await fireEvent.input(screen.getByTestId('hub-repo'), { target: { value: ' tiny/llama ' } });
    await fireEvent.input(screen.getByTestId('hub-token'), { target: { value: TOKEN } });
    expect((screen.getByTestId('hub-token') as HTMLInputElement).type).toBe('password');
    expect(submit.disabled).toBe(false);
    await fireEvent.click(submit);
    await waitFor(() => expect(api.calls.some((c) => c.method === 'models.pull')).toBe(true));
    expect(api.calls.find((c) => c.method === 'models.pull')!.params).toEqual({
      repo: 'tiny/llama',
      revision: 'main',
      token: TOKEN,
    });
    await waitFor(() => expect(screen.getByText(/Asking the Hub about tiny\/llama/)).toBeTruthy());
    expect((screen.getByTestId('hub-download-submit') as HTMLButtonElement).disabled).toBe(true);

    api.emit(
      'pull.progress',
      progress([
        file('config.json', 1000, 1000, 'done'),
        file('model.safetensors', 3000, 1500, 'downloading'),
        file('tokenizer.json', 0, 0, 'waiting'),
      ]),
    );
    await waitFor(() => expect(screen.getAllByTestId('hub-file')).toHaveLength(3));
    const rows = screen.getAllByTestId('hub-file');
    expect(rows.map((r) => r.dataset.state)).toEqual(['done', 'downloading', 'waiting']);
    expect(rows[1].textContent).toMatch(/model\.safetensors.*50%.*1\.5 KB of 2\.9 KB · downloading/);
    const total = screen.getByTestId('hub-total');
    expect(total.querySelector('[role="progressbar"]')!.getAttribute('aria-valuenow')).toBe('63');
    expect(total.textContent).toMatch(/2\.4 KB of 3\.9 KB · 1 of 3 files · tiny\/llama@main = 0123456789/);
    // The top bar of the app names the job too.
    expect(studio.jobs.jobs['job-1'].label).toBe('Downloading tiny/llama');

    listed.push(model);
    api.emit('job.done', {
      jobId: 'job-1',
      method: 'models.pull',
      result: {
        repo: 'tiny/llama',
        revision: 'main',
        commit: COMMIT,
        snapshot: model.path,
        cacheDir: '/hf/hub',
        files: [
          { path: 'config.json', size: 1000, blob: 'b1', from: 'network' },
          { path: 'model.safetensors', size: 3000, blob: 'b2', from: 'resumed' },
          { path: 'tokenizer.json', size: 0, blob: 'b3', from: 'cache' },
        ],
        totalBytes: 4000,
        fetchedBytes: 2500,
        offline: false,
        tokenFrom: 'given',
        notes: [],
        model,
      },
    });
    await waitFor(() => expect(screen.getByTestId('hub-done').textContent).toMatch(/recorded as tiny\/llama/));
    expect(screen.getByTestId('hub-done').textContent).toContain(model.path);
    expect(screen.getAllByTestId('hub-file').map((r) => r.dataset.state)).toEqual(['done', 'done', 'cached']);
    // The list is asked again and the new model is selected.
    await waitFor(() =>
      expect(
        screen.getAllByTestId('model-item').find((b) => b.getAttribute('aria-current') === 'true')?.textContent,
      ).toMatch(/tiny\/llama/),
    );
    expect((screen.getByTestId('hub-download-submit') as HTMLButtonElement).disabled).toBe(false);
    // The token went with the request and nowhere else.
    expect(JSON.stringify(studio.pulls.views)).not.toContain(TOKEN);
  });

  it('leaves the token out when none is typed, and shows a refusal in its own words', async () => {
    const { api } = setup();
    await fireEvent.input(screen.getByTestId('hub-repo'), { target: { value: 'tiny/gated' } });
    await fireEvent.click(screen.getByTestId('hub-download-submit'));
    await waitFor(() => expect(api.calls.some((c) => c.method === 'models.pull')).toBe(true));
    expect(api.calls.find((c) => c.method === 'models.pull')!.params).toEqual({ repo: 'tiny/gated', revision: 'main' });
    const message =
      'tiny/gated is gated: accept its licence at https://huggingface.co/tiny/gated (signed in to Hugging Face), then give a token of that account';
    api.emit('job.done', { jobId: 'job-1', method: 'models.pull', error: { code: 'failed', message } });
    await waitFor(() => expect(screen.getByTestId('hub-error').textContent).toBe(message));
  });

  it('shows a refused call (bad parameters) with the parameter named', async () => {
    const { api } = setup();
    api.handle('models.pull', {
      error: {
        code: 'bad-params',
        message: 'models.pull: revision: a revision is a branch, a tag, a commit or "refs/pr/N"',
        issues: [{ path: 'revision', message: 'a revision is a branch, a tag, a commit or "refs/pr/N"' }],
      },
    });
    await fireEvent.input(screen.getByTestId('hub-repo'), { target: { value: 'tiny/llama' } });
    await fireEvent.click(screen.getByTestId('hub-download-submit'));
    await waitFor(() => expect(screen.getByTestId('hub-error').textContent).toMatch(/revision: a revision is/));
  });
});
