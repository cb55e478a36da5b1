// (IA)³'s merge rule. A vector l that scales a module's output scales the rows of its weight and its bias
// (W[o, ·]·l[o], b[o]·l[o]), in the order applied relative to LoRA; one that scales a feed-forward module's input
// scales the columns (W[·, i]·l[i]) and acts on the base product only, so it folds first. Taken out by dividing.
import type { ModuleRecord } from '../../../models/builder.js';
import type { BuiltModel } from '../../../models/types.js';
import { storedAt, type MergeRule, type WeightLayout } from '../../merge.js';

/** Whether the module's first node reads its input scaled by the (IA)³ vector held in graph value `lValue`. */
function readsScaledInput(model: BuiltModel, rec: ModuleRecord, lValue: string): boolean {
  const g = model.graph;
  const scaled = new Set(g.nodes.filter((n) => n.op === 'Mul' && n.inputs.includes(lValue)).flatMap((n) => n.outputs));
  const entry = g.nodes.find((n) => n.name === rec.entry);
  return !!entry?.inputs.some((i) => scaled.has(i));
}

const times = (sign: 1 | -1) => (sign === 1 ? (x: number, f: number) => x * f : (x: number, f: number) => x / f);

export const ia3Merge: MergeRule = {
  fold({ model, module, param }) {
    const l = param(`${module.name}.ia3_l`);
    // Its length says which side it scales; on a square module, the graph says.
    const onInput =
      l.data.length === module.in && (module.in !== module.out || readsScaledInput(model, module, l.value));
    const v = l.data;
    const weight = (W: Float32Array, layout: WeightLayout, sign: 1 | -1): void => {
      const at = storedAt(layout),
        f = times(sign);
      for (let o = 0; o < layout.out; o++)
        for (let i = 0; i < layout.in; i++) W[at(o, i)] = f(W[at(o, i)], onInput ? v[i] : v[o]);
    };
    if (onInput) return { stage: 'input', weight };
    return {
      stage: 'output',
      weight,
      bias(b, sign) {
        const f = times(sign);
        for (let o = 0; o < b.length; o++) b[o] = f(b[o], v[o]);
      },
    };
  },
};
