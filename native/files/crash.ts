// Crash injection for tests: with DELTA_STUDIO_CRASH_AT=n the process kills itself (SIGKILL, no cleanup, as a power
// cut or `kill -9` would) at the n-th crash point it passes; DELTA_STUDIO_CRASH_COUNT=1 prints every point passed to
// stderr so a test can enumerate them. Unset, a crash point costs one comparison.
const at = Number(process.env.DELTA_STUDIO_CRASH_AT ?? 0);
const count = process.env.DELTA_STUDIO_CRASH_COUNT === '1';
let passed = 0;

export function crashPoint(label: string): void {
  if (!at && !count) return;
  passed++;
  if (count) process.stderr.write(`crash-point ${passed} ${label}\n`);
  if (passed === at) process.kill(process.pid, 'SIGKILL');
}
