// The preload script: exposes one narrow object, window.studio, and nothing of Electron or Node. It runs sandboxed
// (no require but electron's renderer modules), so build/build-electron.mjs bundles it with the contract's method list.
import { METHODS, EVENT_NAMES } from '../native/contract/index.js';
import {
  CALL_CHANNEL,
  EVENT_CHANNEL,
  PICK_FILE_CHANNEL,
  PICK_FOLDER_CHANNEL,
  SHELL_WORKSPACE_EVENT,
} from './channels.js';

export interface ContextBridgeLike {
  exposeInMainWorld(key: string, api: unknown): void;
}
export interface IpcRendererLike {
  invoke(channel: string, ...args: unknown[]): Promise<unknown>;
  on(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
  removeListener(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
}
export interface FileFilter {
  name: string;
  extensions: string[];
}
export interface StudioBridge {
  /** A result or an ApiError as plain data: Error objects lose their fields when they cross contextBridge. */
  call(
    method: string,
    params?: unknown,
  ): Promise<
    { result: unknown } | { error: { code: string; message: string; issues?: { path: string; message: string }[] } }
  >;
  on(event: string, fn: (payload: unknown) => void): () => void;
  pickFolder(): Promise<string | null>;
  pickFile(filters?: FileFilter[]): Promise<string | null>;
  platform: string;
}

/** A refused or failed call, as the renderer sees it: the contract's ApiError fields on an Error. */
export class StudioError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly issues?: { path: string; message: string }[],
  ) {
    super(message);
    this.name = 'StudioError';
  }
}

/** Builds the bridge (exported for tests) and exposes it as window.studio. */
export function exposeStudio(
  contextBridge: ContextBridgeLike,
  ipcRenderer: IpcRendererLike,
  methodNames: readonly string[],
  platform: string,
): StudioBridge {
  const methods = new Set(methodNames);
  const events = new Set<string>([...EVENT_NAMES, SHELL_WORKSPACE_EVENT]);
  const api: StudioBridge = {
    async call(method, params) {
      if (typeof method !== 'string' || !methods.has(method))
        return { error: { code: 'unknown-method', message: `unknown method "${String(method)}"` } };
      const r = (await ipcRenderer.invoke(CALL_CHANNEL, method, params ?? {})) as {
        ok: boolean;
        result?: unknown;
        error?: { code: string; message: string; issues?: { path: string; message: string }[] };
      };
      if (r && r.ok) return { result: r.result };
      return { error: r?.error ?? { code: 'failed', message: 'the call failed' } };
    },
    on(event, fn) {
      if (!events.has(event)) throw new StudioError('bad-params', `unknown event "${String(event)}"`);
      if (typeof fn !== 'function') throw new StudioError('bad-params', 'on(event, fn): fn must be a function');
      // The IPC event object (with its sender) never reaches the page: only the payload does.
      const listener = (_e: unknown, msg: unknown): void => {
        const m = msg as { name?: string; payload?: unknown };
        if (m && m.name === event) fn(m.payload);
      };
      ipcRenderer.on(EVENT_CHANNEL, listener);
      return () => {
        ipcRenderer.removeListener(EVENT_CHANNEL, listener);
      };
    },
    pickFolder: async () => (await ipcRenderer.invoke(PICK_FOLDER_CHANNEL)) as string | null,
    pickFile: async (filters) => (await ipcRenderer.invoke(PICK_FILE_CHANNEL, filters ?? [])) as string | null,
    platform,
  };
  contextBridge.exposeInMainWorld('studio', api);
  return api;
}

/** The real wiring, run by the bundled preload (electron/preload-entry.ts). */
export function install(
  electron: { contextBridge: ContextBridgeLike; ipcRenderer: IpcRendererLike },
  platform: string,
): StudioBridge {
  return exposeStudio(electron.contextBridge, electron.ipcRenderer, Object.keys(METHODS), platform);
}
