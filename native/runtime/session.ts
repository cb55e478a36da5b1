// The one place that creates onnxruntime sessions: provider choice with an explicit CPU fallback, threads, memory.
import { isMainThread } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import type { Graph, HostTensor, Value } from '../onnx/graph.js';
import { fmtShape } from '../onnx/shape.js';
import { serialize, type SerializedModel } from '../onnx/serialize.js';
import type { DType, TypedArray } from '../onnx/dtype.js';
import { cudaStatus } from './providers.js';

export type Device = 'auto' | 'cpu' | 'cuda';

const PREPACK_LIMIT = 256 * 1024 * 1024;

export interface SessionOptions {
  device?: Device;
  /** Intra-op threads; 0 lets onnxruntime choose (one per core). */
  threads?: number;
  /** The CPU arena is faster but holds on to memory. */
  cpuArena?: boolean;
  /**
   * onnxruntime's memory pattern: after a run it plans one block for all of a shape's intermediate values and asks
   * the arena for it whole on later runs. Default: on for the CPU, off for CUDA (see cudaOptions).
   */
  memPattern?: boolean;
  /**
   * Prepacking copies every weight into a GEMM-friendly layout (twice when forward and backward both use it).
   * Default: only for graphs with under 256 MiB of weights. Above that, frozen weights stay memory-mapped from
   * their files: on a BERT-base training step that saves ~340 MB and ~2.5 s of start-up for ~4% of step time;
   * on a 16 MB model prepacking buys ~9% of step time for little memory.
   */
  prepack?: boolean;
  /** Graph optimisation level. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * TensorFloat-32 in cuBLAS/cuDNN float32 products (CUDA; default on, as onnxruntime's use_tf32). false gives float32
   * products float32 rounding (gradient checks); process-wide, and only if decided before the process first uses CUDA
   * (see tf32Off).
   */
  tf32?: boolean;
  /** Writes onnxruntime's per-node profile (times and, on the CPU, the arena's bytes in use) to `<prefix>_….json`. */
  profileFilePrefix?: string;
}

export interface OpenedSession {
  session: ort.InferenceSession;
  device: 'cpu' | 'cuda';
  /** Why CUDA was not used when `auto` was asked for (onnxruntime-node never falls back by itself). */
  fallbackReason?: string;
  inputNames: readonly string[];
  outputNames: readonly string[];
  /** Declared inputs (dtype, symbolic shape), when known. */
  inputs?: Value[];
}

/**
 * What onnxruntime-node 1.29 lets a session say about CUDA, read in its binding (github.com/microsoft/onnxruntime,
 * js/node/src/session_options_helper.cc): ParseExecutionProviders passes `deviceId` and nothing else to
 * OrtCUDAProviderOptionsV2 (CreateCUDAProviderOptions; options->device_id = deviceId; AppendExecutionProvider_CUDA_V2),
 * so arena_extend_strategy (kNextPowerOfTwo), gpu_mem_limit, use_tf32, enable_cuda_graph and the cuDNN options keep
 * their defaults; ParseRunOptions (run_options_helper.cc) passes only logSeverityLevel and tag, so the run option
 * memory.enable_memory_arena_shrinkage cannot be set either. What ParseSessionOptions does pass: enableCpuMemArena,
 * enableMemPattern, graphOptimizationLevel, executionMode, intra/inter-op threads, profiling, and `extra` as session
 * config entries (IterateExtraOptions: nested keys joined with '.', string values only). So, for CUDA:
 * - no memory pattern: the pattern is one block the size of all of a step's intermediates, requested whole from the
 *   arena after a first, unplanned run has grown it; with kNextPowerOfTwo a request larger than the current region size
 *   doubles that size until it fits (core/framework/bfc_arena.cc, BFCArena::Extend), so a 40 GB plan takes a 64 GB
 *   region on top of the first run's. Measured on the CPU arena (npm run bench:memory --measure): the pattern doubles
 *   the resident set of a training step; without it, the arena holds 1.02–1.09× what the step's values ask for;
 * - session.use_device_allocator_for_initializers: weights are allocated exactly (cudaMalloc), not in arena regions;
 * - TF32 through NVIDIA_TF32_OVERRIDE=0, which cuBLAS and cuDNN read when they start (the binding cannot pass use_tf32).
 */
export function cudaOptions(opts: SessionOptions = {}): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [{ name: 'cuda', deviceId: 0 }],
    enableMemPattern: opts.memPattern ?? false,
    extra: { session: { use_device_allocator_for_initializers: '1' } },
  };
}

/**
 * The CUDA provider's own options, for sessions made through onnxruntime's C API (the resident-state addon), which can
 * pass them all: the arena grows by what is asked (kSameAsRequested: no power-of-two regions reserved and left empty),
 * and TF32 as asked, for this session only.
 */
export function cudaProviderOptions(opts: SessionOptions = {}): Record<string, string> {
  return {
    device_id: '0',
    arena_extend_strategy: 'kSameAsRequested',
    use_tf32: opts.tf32 === false ? '0' : '1',
  };
}

/**
 * TF32 off for cuBLAS/cuDNN float32 products: NVIDIA_TF32_OVERRIDE=0, which those libraries read when they start in
 * this process — so it must be set before the process first touches CUDA (cudaStatus's probe session included); the
 * sure way is the variable in the environment the process starts with.
 */
function tf32Off(): void {
  if (process.env.NVIDIA_TF32_OVERRIDE === '0') return;
  // A worker thread's process.env is its own copy, not the process environment the CUDA libraries read.
  if (!isMainThread)
    throw new Error('TF32 off: set NVIDIA_TF32_OVERRIDE=0 in the environment of the process (a worker thread cannot)');
  process.env.NVIDIA_TF32_OVERRIDE = '0';
}

/** The onnxruntime session options for `device` (a pure function of the options, so that tests can read them). */
export function ortSessionOptions(
  device: 'cpu' | 'cuda',
  opts: SessionOptions,
  model: Pick<SerializedModel, 'externalFolder' | 'weightBytes'>,
): ort.InferenceSession.SessionOptions {
  const session: Record<string, string> = {};
  if (model.externalFolder) session.model_external_initializers_file_folder_path = model.externalFolder;
  if (!(opts.prepack ?? model.weightBytes < PREPACK_LIMIT)) session.disable_prepacking = '1';
  const cuda = device === 'cuda' ? cudaOptions(opts) : undefined;
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: cuda?.executionProviders ?? ['cpu'],
    graphOptimizationLevel: opts.optimization ?? 'all',
    enableCpuMemArena: opts.cpuArena ?? true,
    enableMemPattern: cuda?.enableMemPattern ?? opts.memPattern ?? true,
    logSeverityLevel: 3,
    extra: { session: { ...session, ...(cuda?.extra as { session: Record<string, string> } | undefined)?.session } },
  };
  if (opts.threads) options.intraOpNumThreads = opts.threads;
  if (opts.profileFilePrefix) {
    options.enableProfiling = true;
    options.profileFilePrefix = opts.profileFilePrefix;
  }
  return options;
}

export async function openSession(model: Graph | SerializedModel, opts: SessionOptions = {}): Promise<OpenedSession> {
  const m = 'bytes' in model ? model : serialize(model);
  const want = opts.device ?? 'auto';
  let device: 'cpu' | 'cuda' = 'cpu';
  let fallbackReason: string | undefined;
  if (want !== 'cpu') {
    if (opts.tf32 === false) tf32Off();
    const st = await cudaStatus();
    if (st.usable) device = 'cuda';
    else if (want === 'cuda') throw new Error(`CUDA was requested but cannot be used: ${st.reason}`);
    else fallbackReason = st.reason;
  }
  const options = ortSessionOptions(device, opts, m);
  let s: ort.InferenceSession;
  try {
    s = await ort.InferenceSession.create(m.bytes, options);
  } catch (e) {
    throw new Error(`onnxruntime could not load the graph on ${device}: ${(e as Error).message}`, { cause: e });
  }
  return { session: s, device, fallbackReason, inputNames: s.inputNames, outputNames: s.outputNames, inputs: m.inputs };
}

export function toOrt(t: HostTensor): ort.Tensor {
  return new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as ort.Tensor.DataType, t.shape);
}

export function fromOrt(t: ort.Tensor): HostTensor {
  return { dtype: t.type as DType, shape: [...t.dims], data: t.data as TypedArray };
}

/** Runs a session with host tensors in and out. Blocking native work: call it from a worker, never the UI thread. */
export async function runSession(
  s: OpenedSession,
  feeds: Record<string, HostTensor>,
  fetches?: string[],
): Promise<Record<string, HostTensor>> {
  checkFeeds(s, feeds);
  const f: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(feeds)) if (s.inputNames.includes(k)) f[k] = toOrt(v);
  const out = await s.session.run(f, fetches ?? (s.outputNames as string[]));
  const res: Record<string, HostTensor> = {};
  for (const [k, v] of Object.entries(out)) res[k] = fromOrt(v);
  return res;
}

/** Checks feeds against the declared inputs: names, dtypes, ranks, static dims, and one size per symbolic dim. */
export function checkFeeds(s: Pick<OpenedSession, 'inputNames' | 'inputs'>, feeds: Record<string, HostTensor>): void {
  for (const name of s.inputNames)
    if (feeds[name] === undefined)
      throw new Error(`missing input "${name}" for the session (inputs: ${s.inputNames.join(', ')})`);
  if (!s.inputs) return;
  const bound = new Map<string, [number, string]>();
  for (const v of s.inputs) {
    const t = feeds[v.name];
    if (t.dtype !== v.dtype) throw new Error(`input "${v.name}": got ${t.dtype}, expected ${v.dtype}`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n)
      throw new Error(`input "${v.name}": ${t.data.length} elements for shape ${fmtShape(t.shape)}`);
    if (t.shape.length !== v.shape.length)
      throw new Error(`input "${v.name}": got shape ${fmtShape(t.shape)}, expected ${fmtShape(v.shape)}`);
    v.shape.forEach((d, i) => {
      const got = t.shape[i];
      if (typeof d === 'number') {
        if (d !== got)
          throw new Error(
            `input "${v.name}": got shape ${fmtShape(t.shape)}, expected ${fmtShape(v.shape)} (dim ${i})`,
          );
        return;
      }
      const prev = bound.get(d);
      if (prev && prev[0] !== got)
        throw new Error(`input "${v.name}": dim ${i} (${d}) is ${got}, but "${prev[1]}" gave ${d} = ${prev[0]}`);
      if (!prev) bound.set(d, [got, v.name]);
    });
  }
}
