// Command-line flags as the contract's run configuration: every setting of native/contract/run-config.ts is a flag
// with the same default, range and words (`--batch-size 16`), so the CLI and the UI cannot drift apart.
import {
  PRECISIONS,
  RUN_CHOICES,
  RUN_NUMBERS,
  numberProblem,
  type RunConfigInput,
  type RunNumberField,
} from '../contract/index.js';

export type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** Precision in the words people type as well as the contract's. */
const PRECISION_WORDS: Record<string, (typeof PRECISIONS)[number]> = {
  fp32: 'float32',
  float32: 'float32',
  fp16: 'float16',
  float16: 'float16',
};

/** "a, b or c". */
export const oneOf = (values: readonly string[]): string =>
  values.length < 2 ? values.join('') : `${values.slice(0, -1).join(', ')} or ${values.at(-1)}`;

/** parseArgs options for every run setting (all strings: the value is checked here, with its range). */
export function runSettingOptions(): Record<string, { type: 'string' }> {
  const flags = [
    ...Object.values(RUN_NUMBERS).map((s) => s.flag),
    ...Object.values(RUN_CHOICES).map((c) => c.flag),
    'early-stopping-metric',
    'early-stopping-patience',
  ];
  return Object.fromEntries(flags.map((f) => [f, { type: 'string' as const }]));
}

/** The help lines of every run setting: flag, default, and what it does. */
export function runSettingHelp(): string {
  const lines = Object.values(RUN_NUMBERS).map((s) => {
    const dflt = 'default' in s ? ` (${s.default})` : '';
    return `  --${`${s.flag} N${dflt}`.padEnd(26)} ${s.doc}`;
  });
  for (const c of Object.values(RUN_CHOICES))
    lines.push(`  --${`${c.flag} ${c.values.join('|')}`.padEnd(26)} default ${c.default}`);
  lines.push(
    `  --${'early-stopping-metric M'.padEnd(26)} stop when M (e.g. accuracy, loss) has not improved for`,
    `  --${'early-stopping-patience N'.padEnd(26)} N evaluations in a row (default 3)`,
  );
  return lines.join('\n');
}

/** The run settings given as flags, checked (a bad one is an error naming the flag); unset ones are left out. */
export function runSettingsFromFlags(v: FlagValues): Partial<RunConfigInput> {
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(RUN_NUMBERS) as [RunNumberField, (typeof RUN_NUMBERS)[RunNumberField]][]) {
    const raw = v[s.flag];
    if (raw === undefined) continue;
    const problem = numberProblem(raw, { ...s, default: undefined }, `--${s.flag}`);
    if (problem || raw === '') throw new Error(`${problem ?? `--${s.flag} needs a value`}, got "${String(raw)}"`);
    out[key] = Number(raw);
  }
  for (const [key, c] of Object.entries(RUN_CHOICES)) {
    const raw = v[c.flag];
    if (raw === undefined) continue;
    const value = key === 'precision' ? PRECISION_WORDS[String(raw)] : String(raw);
    if (!value || !(c.values as readonly string[]).includes(value))
      throw new Error(
        `--${c.flag} must be ${oneOf(key === 'precision' ? ['fp32', 'fp16'] : c.values)}, got "${String(raw)}"`,
      );
    out[key] = value;
  }
  const metric = v['early-stopping-metric'];
  if (typeof metric === 'string') {
    const raw = v['early-stopping-patience'] ?? '3';
    const patience = Number(raw);
    if (!Number.isInteger(patience) || patience < 1)
      throw new Error(`--early-stopping-patience must be a whole number of at least 1, got "${String(raw)}"`);
    out.earlyStopping = { metric, patience };
  } else if (v['early-stopping-patience'] !== undefined)
    throw new Error('--early-stopping-patience goes with --early-stopping-metric (the metric to watch)');
  return out as Partial<RunConfigInput>;
}
