// A run's log: one line per event worth reading later (status changes, about 50 progress lines a run, evaluations),
// appended to <run>/train.log and sent as run.log, so a UI that reloads reads back what it missed.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Events } from '../contract/index.js';
import type { EventBus } from './events.js';
import type { Workspace } from '../store/workspace.js';

export const LOG_FILE = 'train.log';

export function statusLine(d: Events['run.status']): string {
  return `status ${d.status}${d.reason ? ` — ${d.reason}` : ''}${d.plugin ? `; plugin ${d.plugin.name}@${d.plugin.version}` : ''}`;
}

/** A progress line for about 50 of a run's steps (the first, the last, and evenly between), else null. */
export function progressLine(d: Events['run.progress']): string | null {
  const every = Math.max(1, Math.floor(d.totalSteps / 50));
  if (d.step % every !== 0 && d.step !== d.totalSteps && d.step !== 1) return null;
  return `step ${d.step}/${d.totalSteps} epoch ${d.epoch} loss ${d.loss.toFixed(4)} lr ${d.lr.toExponential(2)} grad-norm ${d.gradNorm.toFixed(3)} ${Math.round(d.tokensPerSec)} tok/s ETA ${Math.round(d.etaSeconds)} s`;
}

export function evalLine(d: Events['run.eval']): string {
  return `eval at step ${d.step}: ${Object.entries(d.metrics)
    .map(([k, v]) => `${k} ${v.toFixed(4)}`)
    .join(', ')}`;
}

/** Writes every run's log while attached to the bus; `workspace()` says where runs live now. */
export function attachRunLog(bus: EventBus, workspace: () => Workspace | null): () => void {
  const write = (runId: string, line: string | null): void => {
    if (line === null) return;
    const text = `${new Date().toISOString()} ${line}`;
    try {
      const ws = workspace();
      if (ws) appendFileSync(join(ws.path(ws.getRun(runId).dir), LOG_FILE), `${text}\n`);
    } catch {
      /* a log line is not worth failing a run for */
    }
    // After the event itself has reached every listener: the log line follows what it reports.
    queueMicrotask(() => bus.emit('run.log', { runId, line: text }));
  };
  const offs = [
    bus.on('run.status', (d) => write(d.runId, statusLine(d))),
    bus.on('run.progress', (d) => write(d.runId, progressLine(d))),
    bus.on('run.eval', (d) => write(d.runId, evalLine(d))),
  ];
  return () => offs.forEach((off) => off());
}

export function readRunLog(ws: Workspace, runId: string, tail: number): string[] {
  const file = join(ws.path(ws.getRun(runId).dir), LOG_FILE);
  const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
  return lines.slice(-tail);
}
