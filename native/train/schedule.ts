// Learning-rate schedules, as transformers' get_{constant,linear,cosine}_schedule_with_warmup: a linear warmup
// from 0 over `warmup` steps, then constant, linear decay to 0, or half a cosine to 0 at `total` steps.

export type ScheduleKind = 'constant' | 'linear' | 'cosine';

export interface Schedule {
  lr: number;
  kind: ScheduleKind;
  warmup: number;
  total: number;
}

/** The learning rate of optimizer step `step` (1-based, as the step graph counts). */
export function lrAt(s: Schedule, step: number): number {
  const t = step - 1; // transformers evaluates the lambda at the number of steps already taken
  if (t < s.warmup) return (s.lr * t) / Math.max(1, s.warmup);
  if (s.kind === 'constant') return s.lr;
  const progress = (t - s.warmup) / Math.max(1, s.total - s.warmup);
  if (s.kind === 'linear') return s.lr * Math.max(0, 1 - progress);
  return s.lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
