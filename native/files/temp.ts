// Temp files and folders that carry their owner: `.<what>.<pid>@<host>.<hex>.tmp`. Whoever cleans up (`workspace
// check --repair`, the next import) can then tell the leftovers of a dead process from the work of a live one, which
// it must leave alone.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/** This machine's name as it appears in temp names: letters, digits and '-' only, so the name parses back. */
export function hostTag(host = hostname()): string {
  return host.replace(/[^A-Za-z0-9-]+/g, '-').slice(0, 40) || 'host';
}

/** A hidden temp name owned by this process, e.g. `.model.safetensors.4121@gpu-1.9f3a0c2e.tmp`. */
export function tempName(what: string): string {
  return `.${what}.${process.pid}@${hostTag()}.${randomBytes(4).toString('hex')}.tmp`;
}

const OWNED = /^\..+\.(\d+)@([A-Za-z0-9-]+)\.[0-9a-f]+\.tmp$/;
// What earlier versions wrote: atomic writes with a pid and a time, imports and copies with no owner at all.
const LEGACY_WITH_PID = /^\..+\.(\d+)\.\d+\.tmp$|^\..+\.(?:importing|replaced|building)-(\d+)-[0-9a-f]+$/;
const LEGACY_NO_OWNER = /^\.(?:import|copy)-[0-9a-f]+$|^\.write-probe-.*$/;

export interface TempOwner {
  pid: number;
  /** The host tag, or null for a legacy name (taken as this machine). */
  host: string | null;
}

/** Whether a name is a temp file or folder of ours; `owner` is null when the name does not say who made it. */
export function parseTemp(name: string): { owner: TempOwner | null } | null {
  const owned = OWNED.exec(name);
  if (owned) return { owner: { pid: Number(owned[1]), host: owned[2] } };
  const legacy = LEGACY_WITH_PID.exec(name);
  if (legacy) return { owner: { pid: Number(legacy[1] ?? legacy[2]), host: null } };
  return LEGACY_NO_OWNER.test(name) ? { owner: null } : null;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Who may still be using a temp: 'live' (its process runs here), 'elsewhere' (made on another machine, which we
 * cannot ask) or 'dead' (its process is gone, or the name does not say: safe to clean).
 */
export function tempState(owner: TempOwner | null): 'live' | 'elsewhere' | 'dead' {
  if (!owner) return 'dead';
  if (owner.host !== null && owner.host !== hostTag()) return 'elsewhere';
  return pidAlive(owner.pid) ? 'live' : 'dead';
}
