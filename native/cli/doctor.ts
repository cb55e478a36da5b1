// `delta-studio doctor`: what the runtime is, and a gradient check of every op rule on every usable provider.
import { GRAD_CASES } from '../autodiff/cases.js';
import { checkCase, passed, TOL32, TOL64, type CaseResult } from '../autodiff/gradcheck.js';
import { RULES } from '../autodiff/registry.js';
import '../autodiff/rules/index.js';
import { describeCudaLibraries, findCudaLibraries } from '../runtime/cuda-libs.js';
import { cudaStatus, ortVersion, providersPresent } from '../runtime/providers.js';
import { residentSupport } from '../runtime/resident.js';
import { fusedAttentionOn } from '../train/fused-attention-check.js';

export interface DoctorReport {
  ort: string;
  node: string;
  platform: string;
  providers: string[];
  cuda: {
    usable: boolean;
    reason?: string;
    gpu: boolean;
    provider_folder: string;
    /** The CUDA libraries the provider needs: found (where, version) or missing; `lines` says it in words. */
    libraries: {
      found: Record<string, { path: string; version: string; via: string; where: string }>;
      missing: string[];
      loader_path: string[];
      lines: string[];
    };
  };
  /** Parameters and optimizer state on the device between steps (the resident-state addon), or why not. */
  device_state: { available: boolean; reason?: string; ort?: string };
  /** onnxruntime's fused attention kernels in float16 on each usable provider: they run and agree, or why not. */
  fused_attention: Record<string, { ok: boolean; reason?: string; max_error?: number }>;
  rules: number;
  checked: number;
  failed: string[];
  max_rel_err: number;
  tolerance: { float32: number; float64: number };
  /** Checks held to float32's tolerance for their float64 gradient, with the provider kernels that make it so. */
  float64_as_float32: { check: string; device: string; why: string[] }[];
  results: (CaseResult & { device: string })[];
}

export async function doctor(onResult?: (r: CaseResult & { device: string }) => void): Promise<DoctorReport> {
  const cuda = await cudaStatus();
  const devices: ('cpu' | 'cuda')[] = cuda.usable ? ['cpu', 'cuda'] : ['cpu'];
  const results: (CaseResult & { device: string })[] = [];
  const uncovered = [...RULES.keys()].filter((k) => !GRAD_CASES.some((c) => c.rule === k));
  for (const device of devices) {
    for (const c of GRAD_CASES) {
      const r = { ...(await checkCase(c, device)), device };
      results.push(r);
      onResult?.(r);
    }
  }
  const failed = [
    ...results
      .filter((r) => !passed(r))
      .map((r) => `${r.rule} (${r.label}) on ${r.device}${r.error ? `: ${r.error}` : ''}`),
    ...uncovered.map((k) => `${k}: no gradient check case`),
  ];
  const libs = cuda.libraries ?? findCudaLibraries();
  const errs = results.flatMap((r) => [r.err32, r.err64 ?? 0]).filter((e) => Number.isFinite(e));
  return {
    ort: ortVersion(),
    node: process.versions.node,
    platform: `${process.platform}-${process.arch}`,
    providers: providersPresent().filter((p) => p !== 'cuda' || cuda.usable),
    cuda: {
      usable: cuda.usable,
      reason: cuda.reason,
      gpu: cuda.gpu,
      provider_folder: cuda.providerFolder,
      libraries: {
        found: Object.fromEntries(
          libs.libraries.flatMap((l) =>
            l.found
              ? [[l.soname, { path: l.found.path, version: l.found.version, via: l.found.via, where: l.found.where }]]
              : [],
          ),
        ),
        missing: libs.missing,
        loader_path: libs.loaderPath,
        lines: describeCudaLibraries(libs),
      },
    },
    device_state: (({ available, reason, version }) => ({
      available,
      ...(reason ? { reason } : {}),
      ...(version ? { ort: version } : {}),
    }))(residentSupport()),
    fused_attention: Object.fromEntries(
      await Promise.all(
        devices.map(async (d) => {
          const { ok, reason, maxError } = await fusedAttentionOn(d);
          return [d, { ok, ...(reason ? { reason } : {}), ...(maxError !== undefined ? { max_error: maxError } : {}) }];
        }),
      ),
    ),
    rules: RULES.size,
    checked: new Set(results.filter((r) => !r.error).map((r) => r.rule)).size,
    failed,
    max_rel_err: errs.length ? Math.max(...errs) : NaN,
    tolerance: { float32: TOL32, float64: TOL64 },
    float64_as_float32: results
      .filter((r) => r.tol64Why)
      .map((r) => ({ check: `${r.rule} (${r.label})`, device: r.device, why: r.tol64Why! })),
    results,
  };
}
