// The service behind both transports (Electron IPC and `delta-studio serve`): the contract's handlers over the
// application, and its event stream. Transports validate a call (validateCall) before a handler sees it; every
// handler's error leaves as a ContractError.
import { conflict, type EventName, type Events, type Handlers, type MethodName } from '../contract/index.js';
import { Application, type ApplicationOptions } from '../app/index.js';
import { toContractError } from '../app/errors.js';

/** Typed on/off over the contract's events. */
export interface ServiceEvents {
  on<E extends EventName>(event: E, fn: (data: Events[E]) => void): void;
  off<E extends EventName>(event: E, fn: (data: Events[E]) => void): void;
}

export interface Service {
  handlers: Handlers;
  events: ServiceEvents;
  /** The open workspace's folder (a transport allows paths inside it). */
  readonly workspaceDir: string | null;
  close(): Promise<void>;
}

export interface ServiceOptions extends ApplicationOptions {
  /** Per-user folder for the service's own state (recent workspaces). */
  stateDir: string;
}

/** One handler per contract method, each a call of the application. */
export function handlersOf(app: Application): Handlers {
  return {
    'app.info': async () => app.info(),
    'workspace.create': (p) => app.open(p.path, true),
    'workspace.open': (p) => app.open(p.path, false),
    'workspace.recent': async () => app.recent(),
    'workspace.check': async (p) => app.check(p.path, p.repair),

    'models.import': async (p) => app.models.import(p),
    'models.list': async () => app.models.list(),
    'models.tree': async (p) => app.models.tree(p),
    'models.pull': async (p) => app.models.startPull(p),

    'datasets.preview': (p) => app.datasets.preview(p.path, p.rows, p),
    'datasets.import': async (p) => {
      app.workspaceOrFail();
      return app.jobs.start('datasets.import', (progress) => app.datasets.import(p, progress));
    },
    'datasets.list': async () => app.datasets.list(),
    'datasets.stats': async (p) => app.datasets.stats(p.versionId, p.modelId, p.chatTemplate),

    'runs.estimate': async (p) => app.runs.estimate(p),
    'runs.start': (p) => app.runs.start(p),
    'runs.list': async (p) => app.runs.list(p.status),
    'runs.get': async (p) => app.runs.get(p.runId),
    'runs.log': async (p) => app.runs.log(p.runId, p.tail),
    'runs.metrics': async (p) => app.runs.metrics(p.runId, p.keys, p.afterStep),
    'runs.pause': async (p) => app.runs.pause(p.runId),
    'runs.resume': async (p) => app.runs.resume(p.runId),
    'runs.cancel': async (p) => app.runs.cancel(p.runId),
    'runs.compare': async (p) => app.runs.compare(p.runIds),
    'sweeps.start': (p) => app.runs.sweep(p.base, p.variants, p.name),

    'plugins.list': async () => app.plugins.list(),
    'plugins.get': async (p) => app.plugins.get(p.name),
    'plugins.tag': async (p) => app.plugins.tag(p.ref, p.add, p.remove),
    'plugins.alias': async (p) => app.plugins.alias(p.ref, p.alias, p.remove),
    'plugins.notes': async (p) => app.plugins.notes(p.ref, p.notes),
    'plugins.export': async (p) => {
      app.exports.check(p);
      return app.jobs.start('plugins.export', (progress) => app.exports.run(p, progress));
    },
    'plugins.importPeft': async (p) => app.plugins.importPeft(p),
    'plugins.showInFolder': async (p) => app.plugins.reveal(p.path),

    'playground.predict': (p) => app.playground.predict(p),
    'playground.chat': (p) => app.playground.chat(p, (e) => app.events.emit('playground.token', e)),

    'system.gpu': () => app.system.gpu(),
    'system.installCuda': async () =>
      app.jobs.start('system.installCuda', (progress) => app.system.installCuda(progress)),
  };
}

/** Creates the service: an application, its handlers with errors as ContractErrors, and its events. */
export function createService(opts: ServiceOptions): Service {
  const app = new Application(opts);
  let closed = false;
  const handlers = handlersOf(app);
  const wrapped = Object.fromEntries(
    (Object.keys(handlers) as MethodName[]).map((k) => [
      k,
      async (p: unknown) => {
        if (closed) throw conflict('the service is closed');
        try {
          return await (handlers[k] as (p: unknown) => Promise<unknown>)(p);
        } catch (e) {
          throw toContractError(e);
        }
      },
    ]),
  ) as Handlers;
  return {
    handlers: wrapped,
    events: {
      on: (event, fn) => void app.events.on(event, fn),
      off: (event, fn) => app.events.off(event, fn),
    },
    get workspaceDir() {
      return app.workspace?.dir ?? null;
    },
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
    },
  };
}
