// Delta methods: one folder each (methods/<method>/), one registry. A method is a config schema with defaults + a
// graph transform that adds its parameters (with their initialisation) and nodes and says which parameters train,
// and, where it has them, a merge rule (how its delta becomes plain weights) and a PEFT mapping (how it is written as
// and read from a PEFT adapter). The merge and PEFT drivers ask the registry, never a method's name.
import { toFloat32 } from '../onnx/dtype.js';
import type { HostTensor, Value } from '../onnx/graph.js';
import { readTensorBytes } from '../onnx/safetensors.js';
import type { ModuleRecord } from '../models/builder.js';
import type { BuildDeltas, BuiltModel } from '../models/types.js';
import { Rng } from '../rng.js';
import type { ConfigKey, DeltaKind, DeltaParam, DeltaScope, MergeRule, PeftMapping } from './types.js';

export type { ConfigKey, DeltaKind, DeltaParam, DeltaScope } from './types.js';

export interface DeltaMethod {
  name: string;
  kind: DeltaKind;
  /** What the Delta Tuning paper / OpenDelta / PEFT call it. */
  title: string;
  keys: Record<string, ConfigKey>;
  /** Why a config whose keys are each valid cannot be used together (defaults filled), or undefined. */
  check?(cfg: Record<string, unknown>): string | undefined;
  /** What the graph must be built with (a soft prompt changes the inputs, not a module). */
  build?(cfg: Record<string, unknown>): BuildDeltas;
  apply(ctx: DeltaContext, cfg: Record<string, unknown>): void;
  /**
   * The config that builds the graph a trained plugin's tensors fit, when they are not the ones `cfg` trains (a
   * prefix plugin may keep the projected prefixes of its MLP). `has` says whether the plugin holds a tensor.
   */
  forPluginTensors?(cfg: Record<string, unknown>, has: (name: string) => boolean): Record<string, unknown>;
  /** How the trained delta becomes plain weights of the base model; absent: it cannot (`cannotMerge` says why). */
  merge?: MergeRule;
  /** Why no weight of the base model can hold this method's delta, for the refusal. */
  cannotMerge?: string;
  /** How PEFT writes and reads this method; absent: PEFT has no equivalent. */
  peft?: PeftMapping;
}

// Which delta set took over each backbone weight (or build-time parameter) of a model: a weight has one value, so
// two sets that both train it cannot be combined.
const CLAIMS = new WeakMap<BuiltModel, Map<string, { ctx: DeltaContext; method: string }>>();

export class DeltaContext {
  readonly params: DeltaParam[] = [];
  readonly initial: Record<string, HostTensor> = {};
  /** Module name → methods that modified it. */
  readonly marked = new Map<string, string[]>();
  readonly rng: Rng;
  constructor(
    readonly model: BuiltModel,
    seed: number,
    public method = '',
    readonly scope: DeltaScope = {},
  ) {
    this.rng = new Rng(seed);
  }

  /** This set's name in errors. */
  get owner(): string {
    return (
      this.scope.owner ??
      (this.scope.namespace !== undefined ? `delta set "${this.scope.namespace}"` : 'a delta config')
    );
  }

  private claim(name: string): void {
    let claims = CLAIMS.get(this.model);
    if (!claims) CLAIMS.set(this.model, (claims = new Map()));
    const prior = claims.get(name);
    if (prior && prior.ctx !== this) {
      throw new Error(
        `${prior.ctx.owner} (${prior.method}) and ${this.owner} (${this.method}) both train "${name}": one weight cannot take two trained values; use them one at a time`,
      );
    }
    claims.set(name, { ctx: this, method: this.method });
  }

  get g() {
    return this.model.graph;
  }

  mark(m: ModuleRecord | string): void {
    const name = typeof m === 'string' ? m : m.name;
    const list = this.marked.get(name) ?? [];
    if (!list.includes(this.method)) list.push(this.method);
    this.marked.set(name, list);
  }

  /** A new trainable parameter, stored in the plugin under `name`. */
  newParam(name: string, t: HostTensor): Value {
    if (this.params.some((p) => p.name === name))
      throw new Error(`${this.method}: parameter "${name}" is added twice (two methods on one module?)`);
    const ns = this.scope.namespace;
    const valueName = ns !== undefined ? `${ns}/${name}` : name;
    if (this.g.values.has(valueName))
      throw new Error(
        `${this.method}: the graph already has a value "${valueName}" (a second delta set on one model needs its own namespace)`,
      );
    const v = this.g.initializer(valueName, t);
    this.params.push({ name, value: v.name, method: this.method, existing: false });
    this.initial[v.name] = t;
    return v;
  }

  /** Takes over a parameter the model was built with (a soft prompt), with its initial value. */
  adoptParam(name: string, t: HostTensor): Value {
    const v = this.model.builder.deltaWeights.get(name);
    if (!v)
      throw new Error(
        `${this.method}: the model was built without "${name}"; build it with deltaBuildOptions(configs) (loadWithDeltas does)`,
      );
    this.claim(name);
    this.g.initializers.set(v.name, { kind: 'host', tensor: t });
    this.params.push({ name, value: v.name, method: this.method, existing: false });
    this.initial[v.name] = t;
    return v;
  }

  /** Makes a backbone weight trainable; float16/bfloat16 weights get a float32 copy that replaces their upcast. */
  trainWeight(name: string): Value {
    const hit = this.params.find((p) => p.name === name);
    if (hit) return this.g.value(hit.value);
    const b = this.model.builder;
    const v = b.weightValues.get(name);
    if (!v) throw new Error(`${this.method}: weight "${name}" is not used by this ${this.model.architecture}`);
    if (v.dtype === 'float16')
      throw new Error(
        `${this.method}: weight "${name}" is kept in float16 by mixed precision; training backbone weights needs precision float32`,
      );
    this.claim(name);
    let trainable = v;
    if (this.g.initializers.has(v.name)) {
      const init = this.g.initializers.get(v.name)!;
      if (init.kind === 'host') this.initial[v.name] = init.tensor;
      else {
        this.initial[v.name] = {
          dtype: 'float32',
          shape: init.ref.shape,
          data: toFloat32(init.ref.dtype, readTensorBytes(init.ref)),
        };
      }
    } else {
      const ref = b.folder.weights.get(name)!;
      const t: HostTensor = { dtype: 'float32', shape: ref.shape, data: toFloat32(ref.dtype, readTensorBytes(ref)) };
      trainable = this.g.initializer(`${name}::trainable`, t);
      this.g.replaceUses(v.name, trainable.name);
      b.weightValues.set(name, trainable);
      this.initial[trainable.name] = t;
    }
    this.params.push({ name, value: trainable.name, method: this.method, existing: true });
    return trainable;
  }

  /** Inserts nodes before a module's first node that rewrite its input (e.g. (IA)³ scaling of a feed-forward input). */
  mapInput(m: ModuleRecord, fn: (x: Value) => Value): void {
    const at = this.g.nodes.findIndex((n) => n.name === m.entry);
    if (at < 0 || !m.input) throw new Error(`${this.method}: module ${m.name} cannot take an input transform`);
    const node = this.g.nodes[at];
    const out = this.g.insertAt(at, () => fn(this.g.value(m.input!)));
    node.inputs = node.inputs.map((i) => (i === m.input ? out.name : i));
  }

  /** Rewrites a module's output for every reader (e.g. y + low-rank(x)). */
  mapOutput(m: ModuleRecord, fn: (y: Value) => Value): void {
    if (!m.output) throw new Error(`${this.method}: module ${m.name} has no output to modify`);
    const old = m.output;
    const out = this.g.spliceAfter(old, fn);
    // Every module that read or produced the old value now reads or produces the new one (a block's output is the
    // next block's input; a LayerNorm's output is its container's), so later deltas see this one.
    for (const r of this.model.modules) {
      if (r.input === old) r.input = out.name;
      if (r.output === old) r.output = out.name;
    }
  }
}

export const METHODS = new Map<string, DeltaMethod>();

export function registerMethod(m: DeltaMethod): void {
  if (METHODS.has(m.name)) throw new Error(`delta method ${m.name} is registered twice`);
  METHODS.set(m.name, m);
}

/**
 * Checks a method's config: unknown keys and wrong types are errors listing what is valid; fills defaults. PEFT's
 * spelling of a key (lora_alpha, lora_dropout, use_rslora, num_virtual_tokens, …) is the same setting as ours;
 * both given with different values is an error naming both.
 */
export function validateConfig(m: DeltaMethod, raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const givenAs = new Map<string, string>();
  const ours = new Map(Object.entries(m.keys).flatMap(([k, spec]) => (spec.peft ? [[spec.peft, k] as const] : [])));
  for (const [given, v] of Object.entries(raw)) {
    if (given === 'method') continue;
    const k = Object.hasOwn(m.keys, given) ? given : ours.get(given);
    if (k === undefined) {
      const valid = Object.entries(m.keys).map(([key, spec]) => (spec.peft ? `${key} (PEFT: ${spec.peft})` : key));
      throw new Error(`${m.name}: unknown config key "${given}" (valid: ${valid.join(', ')})`);
    }
    const spec = m.keys[k];
    const bad = (want: string): never => {
      throw new Error(`${m.name}: "${given}" must be ${want}, got ${JSON.stringify(v)}`);
    };
    switch (spec.type) {
      case 'number':
        if (typeof v !== 'number' || !Number.isFinite(v)) bad('a number');
        break;
      case 'integer':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) bad('a non-negative integer');
        break;
      case 'boolean':
        if (typeof v !== 'boolean') bad('true or false');
        break;
      case 'string':
        if (typeof v !== 'string') bad('a string');
        break;
      case 'strings':
        if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) bad('a list of strings');
        break;
      case 'strings-or-regex':
        if (typeof v !== 'string' && !(Array.isArray(v) && v.every((s) => typeof s === 'string')))
          bad('a list of names or one regular expression');
        break;
    }
    const first = givenAs.get(k);
    if (first !== undefined && JSON.stringify(out[k]) !== JSON.stringify(v)) {
      throw new Error(
        `${m.name}: "${first}" is ${JSON.stringify(out[k])} but "${given}" is ${JSON.stringify(v)}, and they are one setting (${k}; PEFT calls it ${spec.peft}); give one of them`,
      );
    }
    givenAs.set(k, given);
    out[k] = v;
  }
  for (const [k, spec] of Object.entries(m.keys)) if (!(k in out) && spec.default !== undefined) out[k] = spec.default;
  const why = m.check?.(out);
  if (why) throw new Error(`${m.name}: ${why}`);
  return out;
}

export const ADDRESSING_KEYS: Record<string, ConfigKey> = {
  modified_modules: {
    type: 'strings',
    doc: 'OpenDelta addressing: name suffixes at dot boundaries, "[r]regex", "attn@.q@" common names',
  },
  target_modules: {
    type: 'strings-or-regex',
    doc: 'PEFT addressing: name suffixes, or one regular expression matching whole names',
  },
  exclude_modules: { type: 'strings', doc: 'modules left alone, addressed like modified_modules' },
};
