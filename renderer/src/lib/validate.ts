// Checks a run config before it is sent, with the contract's ranges, so that the form can say what to fix at once.
// The engine validates again; its error is shown if it still fails.
import type { RunConfig } from './types.js';

type Rule = { int?: boolean; min?: number; max?: number; gt?: number; optional?: boolean; label: string };

export const RUN_FIELDS: Record<string, Rule> = {
  epochs: { int: true, min: 1, max: 1000, label: 'Epochs' },
  maxSteps: { int: true, min: 1, max: 10_000_000, optional: true, label: 'Max steps' },
  batchSize: { int: true, min: 1, max: 4096, label: 'Batch size' },
  accumulation: { int: true, min: 1, max: 1024, label: 'Gradient accumulation' },
  lr: { gt: 0, max: 10, label: 'Learning rate' },
  warmup: { min: 0, label: 'Warmup' },
  weightDecay: { min: 0, max: 1, label: 'Weight decay' },
  maxLength: { int: true, min: 4, max: 32_768, label: 'Max length' },
  seed: { int: true, min: 0, label: 'Seed' },
  evalEvery: { int: true, min: 1, optional: true, label: 'Evaluate every' },
  checkpointEvery: { int: true, min: 1, label: 'Checkpoint every' },
};

export function checkNumber(value: unknown, rule: Rule): string | null {
  if (value === undefined || value === null || value === '') return rule.optional ? null : `${rule.label} is required`;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(n)) return `${rule.label} must be a number`;
  if (rule.int && !Number.isInteger(n)) return `${rule.label} must be a whole number`;
  if (rule.gt !== undefined && !(n > rule.gt)) return `${rule.label} must be greater than ${rule.gt}`;
  if (rule.min !== undefined && n < rule.min) return `${rule.label} must be at least ${rule.min}`;
  if (rule.max !== undefined && n > rule.max) return `${rule.label} must be at most ${rule.max}`;
  return null;
}

/** Field → message for every problem; empty when the config may be sent. */
export function validateRunConfig(cfg: Partial<RunConfig>): Record<string, string> {
  const errors: Record<string, string> = {};
  if (!cfg.modelId) errors.modelId = 'Choose a model (import one on the Models screen first)';
  if (!cfg.datasetVersionId)
    errors.datasetVersionId = 'Choose a dataset version (import one on the Datasets screen first)';
  if (!cfg.deltas?.length) errors.deltas = 'Choose a method';
  else if (cfg.deltas.length > 8) errors.deltas = 'At most 8 methods can be combined';
  for (const [k, rule] of Object.entries(RUN_FIELDS)) {
    const msg = checkNumber((cfg as Record<string, unknown>)[k], rule);
    if (msg) errors[k] = msg;
  }
  if (cfg.plugin !== undefined && cfg.plugin !== '' && !/^[\p{L}\p{N}._-]{1,100}$/u.test(cfg.plugin))
    errors.plugin = 'Plugin name: letters, digits, ".", "-" or "_" only';
  return errors;
}
