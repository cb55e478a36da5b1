// Merging LoRA and (IA)³ into the base weights (and taking them out again): the merged model has no delta nodes
// and gives the same outputs. Other methods change the computation in ways a weight cannot hold, and are refused.
import { toFloat32 } from '../onnx/dtype.js';
import type { HostTensor } from '../onnx/graph.js';
import { readTensorBytes } from '../onnx/safetensors.js';
import type { BuiltModel } from '../models/types.js';
import type { AppliedDelta } from './index.js';
import { loraScale } from './methods/lora.js';

type Weights = Record<string, HostTensor>;

function baseWeight(model: BuiltModel, name: string, current: Weights): Float32Array {
  if (current[name]) return Float32Array.from(current[name].data as Float32Array);
  const ref = model.builder.folder.weights.get(name);
  if (!ref) throw new Error(`merge: weight "${name}" is not in ${model.builder.folder.dir}`);
  return toFloat32(ref.dtype, readTensorBytes(ref));
}

/**
 * Returns the base weights with every LoRA and (IA)³ delta folded in (sign = 1) or taken out (sign = −1), by
 * Hugging Face name, as float32. `values` holds the delta parameters by graph value name.
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
    if (m.method !== 'lora' && m.method !== 'ia3')
      throw new Error(`merge: ${m.method} cannot be merged into the base weights (only lora and ia3 can)`);
  }
  const val = (name: string): Float32Array => {
    const p = applied.params.find((q) => q.name === name);
    const t = p && (values[p.value] ?? applied.initial[p.value]);
    if (!t) throw new Error(`merge: no value for delta parameter "${name}"`);
    return t.data as Float32Array;
  };
  // Fold in graph order: an (IA)³ vector on a module's input scales only the base weight (LoRA reads the unscaled
  // input), so it goes first; LoRA and output-scaling (IA)³ wrap each other in the order they were applied.
  const steps: { m: AppliedDelta['methods'][number]; modName: string; phase: number }[] = [];
  for (const m of applied.methods) {
    for (const modName of m.modules) {
      let phase = 1;
      if (m.method === 'ia3') {
        const rec = model.modules.find((r) => r.name === modName)!;
        const p = applied.params.find((q) => q.name === `${modName}.ia3_l`);
        const len = p ? (values[p.value] ?? applied.initial[p.value]).data.length : 0;
        if (p && len === rec.in && !(len === rec.out && isOutputScaled(model, modName, p.value))) phase = 0;
      }
      steps.push({ m, modName, phase });
    }
  }
  steps.sort((a, b) => a.phase - b.phase);
  if (sign === -1) steps.reverse();
  for (const { m, modName } of steps) {
    const rec = model.modules.find((r) => r.name === modName)!;
    const conv = rec.type === 'Conv1D';
    const inF = rec.in!,
      outF = rec.out!;
    const wName = `${modName}.weight`;
    const W = baseWeight(model, wName, out);
    // Element (o, i) of the math-sense weight [out, in], in the stored layout.
    const at = (o: number, i: number): number => (conv ? i * outF + o : o * inF + i);
    if (m.method === 'lora') {
      const r = m.config.r as number;
      const s = sign * loraScale({ r, alpha: m.config.alpha as number, rslora: m.config.rslora as boolean });
      const A = val(`${modName}.lora_A`),
        B = val(`${modName}.lora_B`);
      for (let o = 0; o < outF; o++)
        for (let i = 0; i < inF; i++) {
          let d = 0;
          for (let k = 0; k < r; k++) d += B[o * r + k] * A[k * inF + i];
          W[at(o, i)] += s * d;
        }
    } else {
      const l = val(`${modName}.ia3_l`);
      const lValue = applied.params.find((q) => q.name === `${modName}.ia3_l`)!.value;
      const onInput = l.length === inF && !(l.length === outF && isOutputScaled(model, modName, lValue));
      for (let o = 0; o < outF; o++)
        for (let i = 0; i < inF; i++) {
          const f = onInput ? l[i] : l[o];
          W[at(o, i)] = sign === 1 ? W[at(o, i)] * f : W[at(o, i)] / f;
        }
      const bName = `${modName}.bias`;
      if (!onInput && rec.params.some((p) => p.name === bName)) {
        const b = baseWeight(model, bName, out);
        for (let o = 0; o < outF; o++) b[o] = sign === 1 ? b[o] * l[o] : b[o] / l[o];
        out[bName] = { dtype: 'float32', shape: [outF], data: b };
      }
    }
    out[wName] = { dtype: 'float32', shape: conv ? [inF, outF] : [outF, inF], data: W };
  }
  return out;
}

/** Whether an (IA)³ vector (graph value `lValue`) of a square module scales its output: the graph says, by where it is read. */
function isOutputScaled(model: BuiltModel, modName: string, lValue: string): boolean {
  const g = model.graph;
  const rec = model.modules.find((r) => r.name === modName)!;
  const entry = g.nodes.find((n) => n.name === rec.entry);
  return !entry?.inputs.some((i) =>
    g.nodes.some((n) => n.outputs.includes(i) && n.op === 'Mul' && n.inputs.includes(lValue)),
  );
}
