import { describe, expect, it } from 'vitest';
import { fmtWhen } from '../src/lib/format.js';

describe('fmtWhen: moments as people say them, not ISO strings', () => {
  const now = new Date(2026, 11, 4, 16, 30);
  it('recent moments are relative', () => {
    expect(fmtWhen(new Date(2026, 11, 4, 16, 29, 40).toISOString(), now)).toBe('just now');
    expect(fmtWhen(new Date(2026, 11, 4, 16, 5).toISOString(), now)).toBe('25 min ago');
    expect(fmtWhen(new Date(2026, 11, 4, 13, 0).toISOString(), now)).toBe('3 h ago');
  });
  it('older ones say the day', () => {
    expect(fmtWhen(new Date(2026, 11, 4, 8, 0).toISOString(), now)).toMatch(/^today /);
    expect(fmtWhen(new Date(2026, 11, 3, 14, 2).toISOString(), now)).toMatch(/^yesterday /);
    const old = fmtWhen(new Date(2026, 0, 15, 9, 0).toISOString(), now);
    expect(old).not.toContain('T');
    expect(old).toMatch(/2026/);
  });
  it('nothing, or something that is not a time, stays readable', () => {
    expect(fmtWhen(null)).toBe('—');
    expect(fmtWhen('whenever')).toBe('whenever');
  });
});
