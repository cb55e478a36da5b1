// `delta-studio gpu [--install]`: what the app's GPU panel shows — NVIDIA GPU, the CUDA provider of onnxruntime,
// the CUDA libraries it needs (found where, or missing), whether a CUDA session loads, and what to do next — and the
// same one-step install of the pinned provider.
import { join } from 'node:path';
import { activateCudaProvider, gpuStatus, installCudaProvider } from '../runtime/cuda-install.js';
import { describeCudaLibraries } from '../runtime/cuda-libs.js';
import { userStateDir } from './serve.js';

export async function gpuCommand(v: Record<string, string | boolean | undefined>): Promise<number> {
  const dataDir = typeof v['data-dir'] === 'string' ? v['data-dir'] : userStateDir();
  const json = v.json === true;
  const log = (s: string): void => {
    (json ? process.stderr : process.stdout).write(`${s}\n`);
  };
  let installed: { dir: string; sha256: string; activation: { activated: boolean; reason?: string } } | undefined;
  if (v.install === true) {
    let last = -1;
    const r = await installCudaProvider({
      dataDir,
      onProgress: (p) => {
        const pct = Math.floor(p.fraction * 100);
        if (pct !== last && pct % 10 === 0) {
          last = pct;
          log(`${p.phase} ${pct}%`);
        }
      },
    });
    installed = { dir: r.dir, sha256: r.sha256, activation: activateCudaProvider(dataDir) };
    log(
      `provider in ${r.dir} (sha256 ${r.sha256.slice(0, 16)}…)${installed.activation.activated ? ', copied next to onnxruntime' : `; not activated: ${installed.activation.reason}`}`,
    );
  }
  const s = await gpuStatus({ dataDir });
  log(
    `NVIDIA GPU: ${s.nvidia.present ? `${s.nvidia.name ?? 'present'}${s.nvidia.driver ? ` (driver ${s.nvidia.driver})` : ''}` : `none (${s.nvidia.reason ?? 'not found'})`}`,
  );
  log(
    `CUDA provider: ${s.provider.installed ? (s.loadable ? 'installed and loads' : `installed, does not load${s.reason ? `: ${s.reason}` : ''}`) : 'not installed'}`,
  );
  log('CUDA libraries:');
  for (const line of describeCudaLibraries(s.libraries)) log(`  ${line}`);
  log(
    `State on the device: ${s.deviceState.available ? 'ready (on CUDA, parameters and optimizer state stay on the GPU between steps)' : `no — ${s.deviceState.reason}`}`,
  );
  log(s.advice);
  if (json) process.stdout.write(`${JSON.stringify({ ...s, installed: installed ?? null, dataDir: join(dataDir) })}\n`);
  return 0;
}
