// Crash and fault injection for tests. With DELTA_STUDIO_CRASH_AT=n the process kills itself (SIGKILL, no cleanup, as
// a power cut or `kill -9` would) at the n-th crash point it passes; DELTA_STUDIO_CRASH_COUNT=1 prints every point
// passed to stderr so a test can enumerate them. With DELTA_STUDIO_DISK_FULL=<text> every point whose label holds
// <text> fails as a write to a full disk does (ENOSPC), in this process and in the processes it starts. Unset, a
// crash point costs a comparison and an environment lookup.
const at = Number(process.env.DELTA_STUDIO_CRASH_AT ?? 0);
const count = process.env.DELTA_STUDIO_CRASH_COUNT === '1';
let passed = 0;

export function crashPoint(label: string): void {
  // Read at each point: a test turns the full disk on and off while its process runs.
  const full = process.env.DELTA_STUDIO_DISK_FULL;
  if (full && label.includes(full))
    throw Object.assign(new Error(`ENOSPC: no space left on device, write (${label})`), {
      code: 'ENOSPC',
      errno: -28,
      syscall: 'write',
    });
  if (!at && !count) return;
  passed++;
  if (count) process.stderr.write(`crash-point ${passed} ${label}\n`);
  if (passed === at) process.kill(process.pid, 'SIGKILL');
}
