// The machine: is there an NVIDIA GPU, is onnxruntime's CUDA provider present and loadable, and its one-step install.
import type { CudaInstalled, GpuStatus } from '../contract/index.js';
import { activateCudaProvider, gpuStatus, installCudaProvider } from '../runtime/cuda-install.js';
import type { Progress } from './jobs.js';

export class System {
  /** `dataDir`: where the CUDA provider is downloaded to (the app's per-user data folder). */
  constructor(private readonly dataDir: string) {}

  gpu(): Promise<GpuStatus> {
    return gpuStatus({ dataDir: this.dataDir });
  }

  async installCuda(progress: Progress): Promise<CudaInstalled> {
    const installed = await installCudaProvider({
      dataDir: this.dataDir,
      onProgress: (p) =>
        progress(
          p.fraction,
          `${p.phase}: ${(p.bytes / 1e6).toFixed(1)}${p.total ? ` of ${(p.total / 1e6).toFixed(1)}` : ''} MB`,
        ),
    });
    // Next to onnxruntime's core library is where it loads providers from; a read-only install says why not.
    const activation = activateCudaProvider(this.dataDir);
    return { ...installed, activation };
  }
}
