// The GPU panel says which CUDA libraries were found where, and what is missing with how to get it.
import { render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import GpuPanel from '../src/components/GpuPanel.svelte';
import { createStudio, STUDIO_KEY } from '../src/lib/studio.js';
import type { GpuStatus } from '../src/lib/types.js';
import { fakeApi } from './fake-api.js';

const wheel = '/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib';
const found = (soname: string, label: string, version: string) => ({
  name: soname.slice(3, soname.indexOf('.')) as 'cudart',
  label,
  soname,
  found: {
    path: `${wheel}/${soname}`,
    folder: wheel,
    version,
    via: 'python' as const,
    where: 'pip wheel in the Python environment /opt/torch/.venv',
  },
});
const status: GpuStatus = {
  nvidia: { present: true, name: 'NVIDIA H200', driver: '580.65' },
  provider: { installed: true, binFolder: '/b', inBinFolder: true, inDataFolder: false },
  loadable: false,
  reason: 'the CUDA provider failed to load: libcudnn.so.9: cannot open shared object file',
  advice: 'The provider also needs cuDNN 9 (libcudnn.so.9), not found on this machine: pip install nvidia-cudnn-cu13 …',
  install: { supported: true, url: 'u', pinned: true, cuda: '13', ortVersion: '1.29.0' },
  libraries: {
    supported: true,
    libraries: [
      found('libcudart.so.13', 'CUDA 13 runtime', '13'),
      found('libcublasLt.so.13', 'cuBLASLt 13', '13'),
      found('libcublas.so.13', 'cuBLAS 13', '13'),
      found('libcurand.so.10', 'cuRAND 10', '10'),
      {
        name: 'cudnn',
        label: 'cuDNN 9',
        soname: 'libcudnn.so.9',
        pip: 'nvidia-cudnn-cu13',
        install: 'pip install nvidia-cudnn-cu13 (into any Python environment), or a CUDA 13 toolkit',
      },
    ],
    missing: ['libcudnn.so.9'],
    loaderPath: [wheel],
    searched: 20,
  },
  deviceState: { available: false, reason: 'the resident-state addon is not built (…): run npm run build:native' },
};

describe('GpuPanel', () => {
  it('lists each CUDA library: found where (version, place) or missing with the fix', async () => {
    const api = fakeApi({ 'system.gpu': status });
    render(GpuPanel, { context: new Map<unknown, unknown>([[STUDIO_KEY, createStudio(api)]]) });
    const items = await screen.findAllByTestId('gpu-lib');
    expect(items.map((i) => i.dataset.found)).toEqual(['yes', 'yes', 'yes', 'yes', 'no']);
    expect(items[0].textContent).toContain('libcudart.so.13');
    expect(items[0].textContent).toContain('pip wheel in the Python environment /opt/torch/.venv');
    expect(items[0].querySelector('span')?.getAttribute('title')).toBe(`${wheel}/libcudart.so.13`);
    expect(items[4].textContent).toMatch(/cuDNN 9\s+libcudnn\.so\.9:\s+missing\s+— pip install nvidia-cudnn-cu13/);
    expect(screen.getByTestId('gpu-advice').textContent).toContain('nvidia-cudnn-cu13');
    expect(screen.getByTestId('gpu-usable').textContent).toBe('CPU');
    expect(screen.getByTestId('gpu-device-state').textContent?.trim()).toBe(
      'no — the resident-state addon is not built (…): run npm run build:native',
    );
  });
});
