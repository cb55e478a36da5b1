// Applies delta configs to a built model. Several methods combine on one backbone in a fixed, documented order:
// specification-based first (full, head-only, BitFit: which existing weights train), then reparameterisation (LoRA,
// (IA)³), then addition-based methods; within a kind, in the order given (on one module, LoRA and an output-scaling
// (IA)³ wrap each other in that order; an input-scaling (IA)³ scales the base product only). A task head the folder
// lacked always trains (PEFT's modules_to_save). Each method lives in its own folder, methods/<method>/.
import { loadModel } from '../models/index.js';
import type { BuildDeltas, BuiltModel, ModelOptions } from '../models/types.js';
import { DeltaContext, METHODS, validateConfig, type DeltaScope } from './registry.js';
import type { AppliedDelta, DeltaConfig } from './types.js';
// One folder per method (methods/<method>/index.ts registers it); the registry keeps this order.
import './methods/lora/index.js';
import './methods/bitfit/index.js';
import './methods/ia3/index.js';
import './methods/baselines/index.js';
import './methods/adapters/index.js';
import './methods/soft-prompt/index.js';
import './methods/prefix/index.js';

export type { AppliedDelta, DeltaConfig } from './types.js';

const ORDER = { specification: 0, reparameterization: 1, addition: 2 } as const;

/** Reads `{method, …}`, `[{method, …}, …]` or `{deltas: [...]}`. */
export function parseDeltaConfig(raw: unknown, where = 'delta config'): DeltaConfig[] {
  const list = Array.isArray(raw)
    ? raw
    : raw && typeof raw === 'object' && 'deltas' in raw
      ? (raw as { deltas: unknown }).deltas
      : [raw];
  if (!Array.isArray(list) || list.length === 0)
    throw new Error(`${where}: expected {"method": …}, a list of them, or {"deltas": [...]}`);
  return list.map((c, i) => {
    if (!c || typeof c !== 'object' || typeof (c as DeltaConfig).method !== 'string') {
      throw new Error(`${where}: entry ${i} has no "method" (methods: ${[...METHODS.keys()].join(', ')})`);
    }
    const m = METHODS.get((c as DeltaConfig).method);
    if (!m)
      throw new Error(
        `${where}: unknown method "${(c as DeltaConfig).method}" (methods: ${[...METHODS.keys()].join(', ')})`,
      );
    return { ...validateConfig(m, c as Record<string, unknown>), method: m.name };
  });
}

export interface ApplyOptions extends DeltaScope {
  /** Train a task head the folder lacked (default true); false for every set but the one that carries the head. */
  newHead?: boolean;
}

/**
 * Applies one set of delta configs. Several sets (plugins) can go on one model, each under its own `namespace`:
 * their new parameters do not collide, a method may appear once per set, and a backbone weight trained by two
 * sets is refused.
 */
export function applyDeltas(
  model: BuiltModel,
  configs: DeltaConfig[],
  seed = 0,
  opts: ApplyOptions = {},
): AppliedDelta {
  const ctx = new DeltaContext(model, seed, '', opts);
  const sorted = configs
    .map((c, i) => ({ c, i, m: METHODS.get(c.method)! }))
    .sort((a, b) => ORDER[a.m.kind] - ORDER[b.m.kind] || a.i - b.i);
  const methods: AppliedDelta['methods'] = [];
  const seen = new Set<string>();
  for (const { c, m } of sorted) {
    if (seen.has(m.name)) throw new Error(`${m.name} is listed twice in one delta config`);
    seen.add(m.name);
    ctx.method = m.name;
    const before = new Set(ctx.marked.keys());
    m.apply(ctx, validateConfig(m, c));
    methods.push({
      method: m.name,
      config: c,
      modules: [...ctx.marked.entries()]
        .filter(([k, v]) => v.includes(m.name) || (!before.has(k) && v.includes(m.name)))
        .map(([k]) => k),
    });
  }
  ctx.method = 'new head';
  if (opts.newHead !== false)
    for (const name of Object.keys(model.created)) if (!ctx.params.some((p) => p.name === name)) ctx.trainWeight(name);
  return {
    methods,
    params: ctx.params,
    trainable: ctx.params.map((p) => p.value),
    initial: ctx.initial,
    marked: ctx.marked,
  };
}

export { METHODS, type DeltaScope } from './registry.js';

/** What the configs need the graph to be built with (a soft prompt's virtual tokens). */
export function deltaBuildOptions(configs: DeltaConfig[]): BuildDeltas {
  const out: BuildDeltas = {};
  for (const c of configs) {
    const m = METHODS.get(c.method)!;
    if (m.build) Object.assign(out, m.build(validateConfig(m, c)));
  }
  return out;
}

/** Reads a model folder and applies delta configs to it: the usual way in. */
export function loadWithDeltas(
  dir: string,
  opts: ModelOptions,
  configs: DeltaConfig[],
  seed = 0,
): { model: BuiltModel; applied: AppliedDelta } {
  const model = loadModel(dir, { ...opts, build: { ...opts.build, ...deltaBuildOptions(configs) } });
  return { model, applied: applyDeltas(model, configs, seed) };
}
