// A run's configuration: one table of every setting with its default, range and label, from which come the
// contract's schema (what the engine accepts), the CLI's flags (`--batch-size 16`) and the UI's form checks. A new
// setting is one row here.
import { z } from 'zod';
import { DEVICES, PRECISIONS, SCHEDULES, type DeviceChoice, type Precision, type Schedule } from './vocabulary.js';

/** A numeric setting: its range, default (none = optional) and the words the CLI and the UI use for it. */
export interface NumberSetting {
  label: string;
  /** The CLI flag, without its dashes. */
  flag: string;
  doc: string;
  int?: boolean;
  min?: number;
  max?: number;
  /** Strictly greater than (a learning rate of 0 trains nothing). */
  gt?: number;
  default?: number;
}

export const RUN_NUMBERS = {
  epochs: {
    label: 'Epochs',
    flag: 'epochs',
    doc: 'passes over the training split',
    int: true,
    min: 1,
    max: 1000,
    default: 3,
  },
  maxSteps: {
    label: 'Max steps',
    flag: 'max-steps',
    doc: 'stop after this many optimizer steps (overrides epochs); 0 evaluates the model as it is',
    int: true,
    min: 0,
    max: 10_000_000,
  },
  maxTime: {
    label: 'Time budget (s)',
    flag: 'max-time',
    doc: 'stop training after this many seconds, evaluated and saved as at its end',
    min: 1,
    max: 10_000_000,
  },
  batchSize: {
    label: 'Batch size',
    flag: 'batch-size',
    doc: 'examples per step',
    int: true,
    min: 1,
    max: 4096,
    default: 16,
  },
  accumulation: {
    label: 'Gradient accumulation',
    flag: 'accumulation',
    doc: 'batches summed into one optimizer step',
    int: true,
    min: 1,
    max: 1024,
    default: 1,
  },
  lr: { label: 'Learning rate', flag: 'lr', doc: 'peak learning rate of AdamW', gt: 0, max: 10, default: 1e-3 },
  warmup: {
    label: 'Warmup',
    flag: 'warmup',
    doc: 'a fraction of the steps (< 1), or a number of steps (≥ 1)',
    min: 0,
    default: 0.06,
  },
  weightDecay: {
    label: 'Weight decay',
    flag: 'weight-decay',
    doc: "AdamW's decoupled decay",
    min: 0,
    max: 1,
    default: 0.01,
  },
  maxLength: {
    label: 'Max length',
    flag: 'max-length',
    doc: 'tokens per example (longer ones are truncated)',
    int: true,
    min: 4,
    max: 32_768,
    default: 128,
  },
  seed: { label: 'Seed', flag: 'seed', doc: 'data order, initialisation and dropout', int: true, min: 0, default: 0 },
  evalEvery: {
    label: 'Evaluate every',
    flag: 'eval-every',
    doc: 'steps between evaluations (default: once per epoch)',
    int: true,
    min: 1,
  },
  checkpointEvery: {
    label: 'Checkpoint every',
    flag: 'checkpoint-every',
    doc: 'steps between checkpoints (what a resume starts from)',
    int: true,
    min: 1,
    default: 50,
  },
} as const satisfies Record<string, NumberSetting>;
export type RunNumberField = keyof typeof RUN_NUMBERS;

/** Settings that are one of a few words, with their defaults. */
export const RUN_CHOICES = {
  schedule: { label: 'Schedule', flag: 'schedule', values: SCHEDULES, default: 'linear' as Schedule },
  device: { label: 'Device', flag: 'device', values: DEVICES, default: 'auto' as DeviceChoice },
  precision: { label: 'Precision', flag: 'precision', values: PRECISIONS, default: 'float32' as Precision },
} as const;

/** Why `value` does not fit `s`, in the words of its label (or null when it fits). */
export function numberProblem(value: unknown, s: NumberSetting, name = s.label): string | null {
  if (value === undefined || value === null || value === '')
    return s.default === undefined ? null : `${name} is required`;
  const n = typeof value === 'number' ? value : Number(value);
  if (typeof value === 'boolean' || !Number.isFinite(n)) return `${name} must be a number`;
  if (s.int && !Number.isInteger(n)) return `${name} must be a whole number`;
  if (s.gt !== undefined && !(n > s.gt)) return `${name} must be greater than ${s.gt}`;
  if (s.min !== undefined && n < s.min) return `${name} must be at least ${s.min}`;
  if (s.max !== undefined && n > s.max) return `${name} must be at most ${s.max}`;
  return null;
}

function numberSchema(s: NumberSetting) {
  const n = z.number().superRefine((v, ctx) => {
    const problem = numberProblem(v, s);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
  return s.default === undefined ? n.optional() : n.default(s.default);
}

const numbers = Object.fromEntries(Object.entries(RUN_NUMBERS).map(([k, s]) => [k, numberSchema(s)])) as {
  [K in RunNumberField]: (typeof RUN_NUMBERS)[K] extends { default: number }
    ? z.ZodDefault<z.ZodNumber>
    : z.ZodOptional<z.ZodNumber>;
};

/** Plugin names: what a file name and a reference (`name@3`) can hold. */
export const PLUGIN_NAME = /^[\p{L}\p{N}._-]{1,100}$/u;
export const pluginName = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[\p{L}\p{N}._-]+$/u, 'letters, digits, ".", "-" or "_" only');
/** A plugin version by reference: "name" (its latest), "name@3", "name@v3", "name@best", "name@<alias>". */
export const pluginRef = z
  .string()
  .min(1)
  .max(200)
  .regex(
    /^[\p{L}\p{N}._-]{1,100}(@[A-Za-z0-9_-]{1,64})?$/u,
    'a plugin reference is a name, name@3 or name@alias (letters, digits, ".", "-" and "_")',
  );
/** A run id, or its first characters (runs.get "20250101"): letters, digits, ".", "-" and "_". */
export const runId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9._-]+$/, 'a run id (or its first characters) holds only letters, digits, ".", "-" and "_"');

/** A string on one line, at most `max` long: a control character (NUL, newline, escape…) is refused, naming it. */
export function oneLine(max: number, what: string) {
  return z
    .string()
    .max(max)
    .superRefine((s, ctx) => {
      for (let at = 0; at < s.length; at++) {
        const c = s.charCodeAt(at);
        if (c >= 0x20 && c !== 0x7f) continue;
        const code = `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
        ctx.addIssue({ code: 'custom', message: `${what} must not hold a control character (${code} at ${at})` });
        return;
      }
    });
}

/** A delta config as native/delta reads it ({method, …keys}); the engine checks the keys per method. */
export const deltaConfig = z
  .object({
    method: z
      .string()
      .min(1)
      .max(40)
      .regex(/^[A-Za-z0-9_+-]+$/, 'a method name holds only letters, digits, "-", "_" and "+"'),
  })
  .catchall(z.unknown());
export type DeltaConfigInput = z.infer<typeof deltaConfig>;

/**
 * A chat template by name: the model's own named ones or a built-in one ("chatml"), or a template's text (Jinja); the
 * model's default template when absent.
 */
export const chatTemplate = z
  .string()
  .min(1)
  .max(100_000)
  .refine((s) => s.trim() !== '', 'a chat template name must not be blank');

export const earlyStopping = z
  .object({ metric: oneLine(64, 'a metric name').min(1), patience: z.number().int().min(1).max(10_000) })
  .strict();

/** Everything a run needs: a recorded model, a dataset version, the deltas, and every setting above. */
export const runConfig = z
  .object({
    modelId: z.number().int().min(1),
    datasetVersionId: z.number().int().min(1),
    deltas: z.array(deltaConfig).min(1).max(8),
    plugin: pluginName.optional(),
    name: oneLine(200, 'a run name').optional(),
    ...numbers,
    schedule: z.enum(SCHEDULES).default(RUN_CHOICES.schedule.default),
    device: z.enum(DEVICES).default(RUN_CHOICES.device.default),
    precision: z.enum(PRECISIONS).default(RUN_CHOICES.precision.default),
    earlyStopping: earlyStopping.optional(),
    /** A chat dataset: the chat template conversations are written with (default: the model's own). */
    chatTemplate: chatTemplate.optional(),
  })
  .strict(); // strict: a misspelt option is an error, not a silently ignored default
export type RunConfig = z.infer<typeof runConfig>;
export type RunConfigInput = z.input<typeof runConfig>;

/** The defaults of every setting that has one (the UI's form starts from these). */
export const RUN_DEFAULTS = {
  ...(Object.fromEntries(
    Object.entries(RUN_NUMBERS)
      .filter(([, s]) => 'default' in s)
      .map(([k, s]) => [k, (s as NumberSetting).default]),
  ) as { [K in RunNumberField as (typeof RUN_NUMBERS)[K] extends { default: number } ? K : never]: number }),
  schedule: RUN_CHOICES.schedule.default,
  device: RUN_CHOICES.device.default,
  precision: RUN_CHOICES.precision.default,
};

/** Field → message for every problem of a config being filled in (a form); empty when it may be sent. */
export function runConfigProblems(cfg: Partial<Record<string, unknown>>): Record<string, string> {
  const errors: Record<string, string> = {};
  if (!cfg.modelId) errors.modelId = 'Choose a model (import one on the Models screen first)';
  if (!cfg.datasetVersionId)
    errors.datasetVersionId = 'Choose a dataset version (import one on the Datasets screen first)';
  const deltas = cfg.deltas as unknown[] | undefined;
  if (!deltas?.length) errors.deltas = 'Choose a method';
  else if (deltas.length > 8) errors.deltas = 'At most 8 methods can be combined';
  for (const [k, s] of Object.entries(RUN_NUMBERS)) {
    const problem = numberProblem(cfg[k], s);
    if (problem) errors[k] = problem;
  }
  const plugin = cfg.plugin as string | undefined;
  if (plugin !== undefined && plugin !== '' && !PLUGIN_NAME.test(plugin))
    errors.plugin = 'Plugin name: letters, digits, ".", "-" or "_" only';
  return errors;
}
