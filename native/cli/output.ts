// How the CLI prints: a readable table, or with --json one JSON object as the last line of stdout (progress then goes
// to stderr, so the last line stays machine-readable); and a run's progress from the application's events.
import type { Application } from '../app/index.js';
import { nvidiaGpuPresent } from '../runtime/providers.js';

export type Values = Record<string, string | boolean | undefined>;

/** Prints `obj` as JSON with --json, else `text()`; returns exit status 0. */
export function out(v: Values, obj: unknown, text: () => string): number {
  process.stdout.write(v.json ? `${JSON.stringify(obj)}\n` : `${text()}\n`);
  return 0;
}

export function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(w[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export const fmt = (x: number | null | undefined, digits = 4): string =>
  x === null || x === undefined ? '—' : Number.isInteger(x) ? String(x) : x.toFixed(digits);

let cudaNoted = false;

/**
 * Why a run that could use CUDA did not: said once per command, in one clause, and only on a machine that has an
 * NVIDIA GPU (elsewhere the CPU is simply the device); `delta-studio gpu` gives the whole story.
 */
function cudaNote(reason: string | null): string {
  if (!reason || cudaNoted || !nvidiaGpuPresent()) return '';
  cudaNoted = true;
  const first = reason.split(/[;(]/)[0].trim();
  return ` (CUDA not used: ${first}; see delta-studio gpu)`;
}

/** Prints one run's progress: a bar on a terminal, a line every 2 s otherwise; evaluations as they come. */
export function printProgress(app: Application, runId: string, json: boolean): () => void {
  const tty = process.stderr.isTTY && !json;
  const to = json ? process.stderr : process.stdout;
  let last = 0;
  const offs = [
    app.events.on('run.started', (e) => {
      if (e.runId !== runId) return;
      to.write(
        `device ${e.device}${cudaNote(e.fallbackReason)}; ${e.trainableParams.toLocaleString('en-US')} trainable parameters; ${e.totalSteps} steps${e.resumedFrom ? `; resumed from step ${e.resumedFrom}` : ''}\n`,
      );
    }),
    app.events.on('run.progress', (e) => {
      if (e.runId !== runId) return;
      const pct = Math.min(1, e.step / e.totalSteps);
      const line = `step ${e.step}/${e.totalSteps} ${'█'.repeat(Math.round(pct * 24)).padEnd(24, '·')} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${Math.round(e.tokensPerSec)} tok/s ETA ${Math.round(e.etaSeconds)}s`;
      if (tty) process.stderr.write(`\r${line}`);
      else if (Date.now() - last > 2000 || e.step === e.totalSteps) {
        to.write(`${line}\n`);
        last = Date.now();
      }
    }),
    app.events.on('run.eval', (e) => {
      if (e.runId !== runId) return;
      if (tty) process.stderr.write('\n');
      to.write(
        `eval at step ${e.step}: ${Object.entries(e.metrics)
          .map(([k, x]) => `${k} ${x.toFixed(4)}`)
          .join(', ')}\n`,
      );
    }),
  ];
  return () => offs.forEach((off) => off());
}
