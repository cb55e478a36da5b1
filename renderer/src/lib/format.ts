// Numbers as people read them.
export const fmtInt = (n: number | null | undefined): string =>
  n == null ? '—' : Math.round(n).toLocaleString('en-US');

export function fmtPct(n: number | null | undefined, digits = 2): string {
  if (n == null || !Number.isFinite(n)) return '—';
  return `${n < 0.01 && n > 0 ? n.toPrecision(2) : n.toFixed(digits)}%`;
}

export function fmtBytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : n < 10 ? 1 : 0)} ${units[i]}`;
}

export function fmtSeconds(s: number | null | undefined): string {
  if (s == null || !Number.isFinite(s)) return '—';
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtNum(n: number | null | undefined, digits = 4): string {
  if (n == null) return '—';
  if (!Number.isFinite(n)) return String(n);
  return Math.abs(n) >= 1000 || (Math.abs(n) < 1e-3 && n !== 0)
    ? n.toExponential(2)
    : Number(n.toPrecision(digits)).toString();
}

/**
 * A moment as people say it: "just now", "5 min ago", "3 h ago", "yesterday 14:02", else the date and time in the
 * user's locale; the exact ISO time stays in the element's title.
 */
export function fmtWhen(iso: string | null | undefined, now = new Date()): string {
  if (!iso) return '—';
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  const s = (now.getTime() - t.getTime()) / 1000;
  if (s >= 0 && s < 60) return 'just now';
  if (s >= 0 && s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s >= 0 && s < 6 * 3600) return `${Math.floor(s / 3600)} h ago`;
  const time = t.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  const day = (d: Date) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((day(now) - day(t)) / 86_400_000);
  if (days === 0) return `today ${time}`;
  if (days === 1) return `yesterday ${time}`;
  return `${t.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' })} ${time}`;
}

/** What to do next, for an error code. */
export function nextStep(code: string): string {
  switch (code) {
    case 'bad-params':
      return 'Fix the highlighted values and try again.';
    case 'not-found':
      return 'It may have been removed: refresh the list.';
    case 'path-outside':
      return 'Choose a folder the server allows (see `delta-studio serve --allow`).';
    case 'unauthorized':
      return 'Reopen the address with the ?token= that `delta-studio serve` printed.';
    case 'conflict':
      return 'Something else changed it: refresh and try again.';
    case 'unknown-method':
      return 'The engine is older than this UI: update Delta Studio.';
    case 'damaged':
      return 'Run the workspace check: it reports what is damaged and repairs what it safely can.';
    default:
      return 'Try again; if it keeps failing, run the workspace check.';
  }
}
