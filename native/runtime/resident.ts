// Tensors that stay on the device between runs: the resident-state addon (native/runtime/resident/resident.cc, built
// by `npm install` where a C++ compiler is found) over onnxruntime's C API with IoBinding. The step's parameters,
// moments and gradient sums live in one context as named tensors; a run binds them as inputs, and binds the outputs
// that replace them to the device, so only the batch goes in and only the loss and gradient norm come out. Where the
// addon is not built, or cannot load onnxruntime, `residentSupport()` says why and training uses runSession's path.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HostTensor } from '../onnx/graph.js';
import type { SerializedModel } from '../onnx/serialize.js';
import { oneNodeModel, ortBinFolder } from './providers.js';
import { cudaProviderOptions, ortSessionOptions, type SessionOptions } from './session.js';

/** Where `npm install` (build/build-native.mjs) puts the addon; DELTA_STUDIO_RESIDENT_ADDON names another. */
export const RESIDENT_ADDON =
  process.env.DELTA_STUDIO_RESIDENT_ADDON ?? fileURLToPath(new URL('./resident/build/resident.node', import.meta.url));

type Handle = { readonly __context: unique symbol };
interface Addon {
  load(library: string): string;
  createContext(o: {
    device: 'cpu' | 'cuda';
    deviceId: number;
    identity?: Uint8Array;
    identityOptions?: NativeOptions;
  }): Handle;
  addSession(c: Handle, bytes: Uint8Array, o: NativeOptions): number;
  setState(c: Handle, name: string, t: HostTensor): void;
  getState(c: Handle, name: string): HostTensor;
  deleteState(c: Handle, name: string): void;
  stateNames(c: Handle): { name: string; onDevice: boolean; bytes: number }[];
  run(
    c: Handle,
    session: number,
    feeds: Record<string, HostTensor>,
    fromState: Record<string, string>,
    toState: Record<string, string>,
    toHost: string[],
  ): Promise<Record<string, HostTensor>>;
  release(c: Handle): void;
}

/** What the addon's createSession reads. */
interface NativeOptions {
  optimization: number;
  memPattern: boolean;
  threads?: number;
  /** onnxruntime's per-node profile, written to `<prefix>_….json` when the session is released. */
  profilePrefix?: string;
  /** Session config entries (AddSessionConfigEntry). */
  config: Record<string, string>;
  /** CUDA provider options (UpdateCUDAProviderOptions): all of them, not only the device as onnxruntime-node. */
  cuda: Record<string, string>;
}

const LEVELS = { disabled: 0, basic: 1, extended: 2, all: 99 } as const;

/** The onnxruntime library onnxruntime-node loads: the addon must use the same one. */
export function ortLibrary(): string {
  const name =
    process.platform === 'win32'
      ? 'onnxruntime.dll'
      : process.platform === 'darwin'
        ? 'libonnxruntime.1.dylib'
        : 'libonnxruntime.so.1';
  // In the packaged app the library sits in app.asar.unpacked: the addon's dlopen sees only real paths.
  return join(ortBinFolder(), name).replace(/app\.asar([\\/])/, 'app.asar.unpacked$1');
}

let addon: { ok: true; addon: Addon; version: string } | { ok: false; reason: string } | undefined;

/** Whether tensors can stay on the device here, and if not, why (once per process). */
export function residentSupport(): { available: boolean; reason?: string; version?: string } {
  if (!addon) {
    if (process.platform !== 'linux') addon = { ok: false, reason: `the resident-state addon is built on Linux only` };
    else if (!existsSync(RESIDENT_ADDON))
      addon = {
        ok: false,
        reason: `the resident-state addon is not built (${RESIDENT_ADDON}): run npm run build:native (it needs a C++ compiler)`,
      };
    else {
      try {
        const a = createRequire(import.meta.url)(RESIDENT_ADDON) as Addon;
        addon = { ok: true, addon: a, version: a.load(ortLibrary()) };
      } catch (e) {
        addon = { ok: false, reason: `the resident-state addon cannot load: ${(e as Error).message}` };
      }
    }
  }
  return addon.ok ? { available: true, version: addon.version } : { available: false, reason: addon.reason };
}

function nativeOptions(device: 'cpu' | 'cuda', opts: SessionOptions, model?: SerializedModel): NativeOptions {
  // The same choices as a session of onnxruntime-node (ortSessionOptions), so both paths compute alike.
  const o = ortSessionOptions(device, opts, model ?? { externalFolder: undefined, weightBytes: 0 });
  // onnxruntime-node joins `extra`'s nested keys with '.' into session config entries; the C API takes them whole.
  const session = (o.extra as { session?: Record<string, string> } | undefined)?.session ?? {};
  return {
    optimization: LEVELS[(o.graphOptimizationLevel as keyof typeof LEVELS | undefined) ?? 'all'],
    memPattern: o.enableMemPattern ?? true,
    ...(opts.threads ? { threads: opts.threads } : {}),
    ...(opts.profileFilePrefix ? { profilePrefix: opts.profileFilePrefix } : {}),
    config: Object.fromEntries(Object.entries(session).map(([k, v]) => [`session.${k}`, v])),
    cuda: device === 'cuda' ? cudaProviderOptions(opts) : {},
  };
}

/** Named tensors on one device, and the sessions that read and replace them. */
export class ResidentContext {
  private constructor(
    private readonly a: Addon,
    private handle: Handle | null,
    readonly device: 'cpu' | 'cuda',
    private readonly opts: SessionOptions,
  ) {}

  /**
   * A context on `device`. `readBack: 'identity'` reads tensors back through the identity graph on the CPU too, as
   * CUDA must (how the tests run that path without a GPU).
   */
  static create(
    device: 'cpu' | 'cuda',
    opts: SessionOptions = {},
    how: { readBack?: 'direct' | 'identity' } = {},
  ): ResidentContext {
    const support = residentSupport();
    if (!support.available || !addon?.ok) throw new Error(support.reason);
    const identity = device === 'cuda' || how.readBack === 'identity';
    const handle = addon.addon.createContext({
      device,
      deviceId: 0,
      ...(identity ? { identity: oneNodeModel('Identity'), identityOptions: nativeOptions(device, {}) } : {}),
    });
    return new ResidentContext(addon.addon, handle, device, opts);
  }

  private get h(): Handle {
    if (!this.handle) throw new Error('this resident context is released');
    return this.handle;
  }

  /** Opens a session of `model` in this context; returns its number. */
  open(model: SerializedModel): number {
    return this.a.addSession(this.h, model.bytes, nativeOptions(this.device, this.opts, model));
  }

  set(name: string, t: HostTensor): void {
    this.a.setState(this.h, name, t);
  }

  get(name: string): HostTensor {
    return this.a.getState(this.h, name);
  }

  delete(name: string): void {
    this.a.deleteState(this.h, name);
  }

  /** The state's tensors: where each is, and its bytes. */
  list(): { name: string; onDevice: boolean; bytes: number }[] {
    return this.a.stateNames(this.h);
  }

  /**
   * Runs session `session`: `feeds` from the host, `fromState` inputs bound to state tensors (input → state name);
   * `toState` outputs replace state tensors (output → state name) and stay on the device; `toHost` come back.
   */
  run(
    session: number,
    feeds: Record<string, HostTensor>,
    fromState: Record<string, string>,
    toState: Record<string, string>,
    toHost: string[],
  ): Promise<Record<string, HostTensor>> {
    return this.a.run(this.h, session, feeds, fromState, toState, toHost);
  }

  release(): void {
    if (this.handle) this.a.release(this.handle);
    this.handle = null;
  }
}
