// Merging deltas into base weights, the one implementation. A method that can become plain weights says how in its
// own folder (methods/<method>/merge.ts: a fold of its delta into one module's weight, as pure functions over float32
// arrays); this module orders the folds on each module as the graph applies them, and mergeDeltas folds LoRA and
// (IA)³ into the base weights in memory (and takes them out again). The merged export (native/export/merged.ts)
// streams the same folds, in the same order, weight by weight.
import { toFloat32 } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import { readTensorBytes } from '../onnx/safetensors.js';
import type { ModuleRecord } from '../models/builder.js';
import type { BuiltModel } from '../models/types.js';
import { METHODS, validateConfig } from './registry.js';
import type { AppliedDelta, DeltaParam, WeightFold, WeightLayout } from './types.js';

export type { FoldSite, MergeRule, Placement, WeightFold, WeightLayout } from './types.js';

/** Where element (o, i) of the math-sense weight [out, in] is in the stored layout. */
export function storedAt({ in: inF, out: outF, conv }: WeightLayout): (o: number, i: number) => number {
  return conv ? (o, i) => i * outF + o : (o, i) => o * inF + i;
}

/** One fold of one module, a step of a merge. */
export interface FoldStep {
  module: ModuleRecord;
  layout: WeightLayout;
  fold: WeightFold;
}

/** The methods whose deltas fold into base weights (and out again). */
export function foldingMethods(): string[] {
  return [...METHODS.values()].filter((m) => m.merge?.fold).map((m) => m.name);
}

/**
 * The folds of every module a set of applied deltas changed, in graph order: input-stage folds first (they act on
 * the base product only), then the output-stage ones in the order their methods were applied; on one module, this
 * is the order the graph computes them in. `value` gives a parameter's trained values. Methods without a fold rule
 * are left out: each driver refuses or handles them itself.
 */
export function foldsInGraphOrder(
  model: BuiltModel,
  applied: AppliedDelta,
  value: (p: DeltaParam) => Float32Array,
): FoldStep[] {
  const param = (name: string): { data: Float32Array; value: string } => {
    const p = applied.params.find((q) => q.name === name);
    if (!p) throw new Error(`merge: no value for delta parameter "${name}"`);
    return { data: value(p), value: p.value };
  };
  const steps: FoldStep[] = [];
  for (const m of applied.methods) {
    const method = METHODS.get(m.method);
    const fold = method?.merge?.fold;
    if (!method || !fold) continue;
    const config = validateConfig(method, m.config);
    for (const name of m.modules) {
      const rec = model.modules.find((r) => r.name === name);
      if (!rec) throw new Error(`merge: module ${name} is not in the ${model.architecture} graph`);
      const layout = { in: rec.in!, out: rec.out!, conv: rec.type === 'Conv1D' };
      steps.push({ module: rec, layout, fold: fold({ model, module: rec, config, param }) });
    }
  }
  return [...steps.filter((s) => s.fold.stage === 'input'), ...steps.filter((s) => s.fold.stage === 'output')];
}

type Weights = Record<string, HostTensor>;

function baseWeight(model: BuiltModel, name: string, current: Weights): Float32Array {
  if (current[name]) return Float32Array.from(current[name].data as Float32Array);
  const ref = model.builder.folder.weights.get(name);
  if (!ref) throw new Error(`merge: weight "${name}" is not in ${model.builder.folder.dir}`);
  return toFloat32(ref.dtype, readTensorBytes(ref));
}

/**
 * Returns the base weights with every delta folded in (sign = 1) or taken out (sign = −1), by Hugging Face name, as
 * float32. `values` holds the delta parameters by graph value name; `start`, weights to continue from (another set's
 * merge). Only methods with a fold rule (LoRA, (IA)³) can be merged here; others are refused.
 */
export function mergeDeltas(
  model: BuiltModel,
  applied: AppliedDelta,
  values: Record<string, HostTensor>,
  sign: 1 | -1 = 1,
  start: Weights = {},
): Weights {
  const out: Weights = { ...start };
  for (const m of applied.methods) {
    if (!METHODS.get(m.method)?.merge?.fold)
      throw new Error(
        `merge: ${m.method} cannot be merged into the base weights (only ${foldingMethods().join(' and ')} can)`,
      );
  }
  const steps = foldsInGraphOrder(model, applied, (p) => {
    const t = values[p.value] ?? applied.initial[p.value];
    if (!t) throw new Error(`merge: no value for delta parameter "${p.name}"`);
    return t.data as Float32Array;
  });
  // Out again in the reverse order.
  for (const { module, layout, fold } of sign === 1 ? steps : steps.reverse()) {
    const b = `${module.name}.bias`;
    if (fold.bias && module.params.some((p) => p.name === b)) {
      const v = baseWeight(model, b, out);
      fold.bias(v, sign);
      out[b] = { dtype: 'float32', shape: [layout.out], data: v };
    }
    const w = `${module.name}.weight`;
    const W = baseWeight(model, w, out);
    fold.weight(W, layout, sign);
    out[w] = { dtype: 'float32', shape: layout.conv ? [layout.in, layout.out] : [layout.out, layout.in], data: W };
  }
  return out;
}
