// What the onnxruntime install can do here: version, providers present, and whether CUDA is usable (and why not).
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { findCudaLibraries, preloadCudaLibraries, type CudaLibraries } from './cuda-libs.js';

export interface CudaStatus {
  usable: boolean;
  reason?: string;
  gpu: boolean;
  providerFiles: boolean;
  providerFolder: string;
  /** Where the CUDA libraries the provider needs were found (Linux), when the provider is there to need them. */
  libraries?: CudaLibraries;
}

export function ortVersion(): string {
  return ort.env.versions.common;
}

/** The folder of onnxruntime-node's native binding, where the CUDA provider libraries must sit. */
export function ortBinFolder(): string {
  const require = createRequire(import.meta.url);
  const root = dirname(require.resolve('onnxruntime-node/package.json'));
  const base = join(root, 'bin');
  const napi = existsSync(base)
    ? readdirSync(base)
        .filter((d) => d.startsWith('napi-v'))
        .sort()
        .pop()
    : undefined;
  return join(base, napi ?? 'napi-v6', process.platform, process.arch);
}

export function providersPresent(): string[] {
  const folder = ortBinFolder();
  const out = ['cpu'];
  const ext = process.platform === 'win32' ? 'dll' : 'so';
  const pre = process.platform === 'win32' ? '' : 'lib';
  for (const p of ['cuda', 'tensorrt']) {
    if (
      existsSync(join(folder, `${pre}onnxruntime_providers_${p}.${ext}`)) &&
      existsSync(join(folder, `${pre}onnxruntime_providers_shared.${ext}`))
    )
      out.push(p);
  }
  return out;
}

/** Whether this machine has an NVIDIA GPU and driver (cheap: no process, no session). */
export function nvidiaGpuPresent(): boolean {
  return (
    existsSync('/proc/driver/nvidia/version') ||
    existsSync('/dev/nvidia0') ||
    existsSync('C:\\Windows\\System32\\nvml.dll')
  );
}

/**
 * A graph of one float32 node x → y (ONNX bytes): `shape` fixes the tensors' shape, else any shape goes (the probe
 * session here; the resident addon's read-back graph).
 */
export function oneNodeModel(opType: string, shape?: number[]): Uint8Array {
  const { onnx } = onnxProto;
  const type = {
    tensorType: { elemType: 1, ...(shape ? { shape: { dim: shape.map((dimValue) => ({ dimValue })) } } : {}) },
  };
  return onnx.ModelProto.encode({
    irVersion: 9,
    opsetImport: [{ domain: '', version: 20 }],
    graph: {
      name: opType.toLowerCase(),
      node: [{ opType, input: ['x'], output: ['y'] }],
      input: [{ name: 'x', type }],
      output: [{ name: 'y', type }],
    },
  }).finish();
}

let cached: Promise<CudaStatus> | undefined;

/** Tries to open a session on CUDA once per process; the reason says what to fix when it fails. */
export function cudaStatus(): Promise<CudaStatus> {
  cached ??= (async (): Promise<CudaStatus> => {
    const providerFolder = ortBinFolder();
    const gpu = nvidiaGpuPresent();
    const providerFiles = providersPresent().includes('cuda');
    if (!providerFiles) {
      return {
        usable: false,
        gpu,
        providerFiles,
        providerFolder,
        reason:
          `the CUDA provider of onnxruntime ${ortVersion()} is not installed (libonnxruntime_providers_cuda and _shared are missing from ${providerFolder}; see README "GPU")` +
          (gpu ? '' : '; no NVIDIA GPU was found either'),
      };
    }
    if (!gpu)
      return {
        usable: false,
        gpu,
        providerFiles,
        providerFolder,
        reason: 'no NVIDIA GPU or driver was found (/proc/driver/nvidia/version is missing)',
      };
    // The provider resolves its CUDA libraries through the loader when it is first loaded, just below: make the ones
    // we found (toolkits, pip wheels, conda) resolvable in this process first.
    const libraries = findCudaLibraries();
    const preload = preloadCudaLibraries(libraries);
    try {
      const s = await ort.InferenceSession.create(oneNodeModel('Relu', [1]), {
        executionProviders: ['cuda'],
        logSeverityLevel: 3,
      });
      await s.release();
      return { usable: true, gpu, providerFiles, providerFolder, libraries };
    } catch (e) {
      const missing = libraries.libraries.filter((l) => !l.found).map((l) => `${l.label} (${l.soname})`);
      const broken = preload.failed.map((f) => `${f.path}: ${f.error}`);
      return {
        usable: false,
        gpu,
        providerFiles,
        providerFolder,
        libraries,
        reason:
          `the CUDA provider failed to load: ${(e as Error).message.split('\n')[0]}` +
          (missing.length ? `; not found on this machine: ${missing.join(', ')}` : '') +
          (broken.length ? `; could not be loaded: ${broken.join('; ')}` : ''),
      };
    }
  })();
  return cached;
}
