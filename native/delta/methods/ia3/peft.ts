// (IA)³ as PEFT's IA3 adapter (peft/tuners/ia3): base_model.model.<module>.ia3_l, a column [out, 1] that scales a
// module's output, or a row [1, in] that scales a feed-forward module's input (IA3Layer.update_layer). PEFT checks
// feedforward_modules ⊆ target_modules and matches them by plain endswith, which decides how both are written.
import type { HostTensor } from '../../../onnx/graph.js';
import {
  fanInFanOut,
  f32,
  moduleOf,
  modulesWith,
  needTargets,
  peftTargets,
  resolveModule,
  selectedModules,
  targetsFor,
  type PeftAdapter,
} from '../../peft.js';
import { feedforwardModules } from './transform.js';

export const ia3Peft: PeftAdapter = {
  kind: 'adapter',
  type: 'IA3',
  promptLearning: false,
  keys: { vectors: ['ia3_l'] },

  export({ model, config, params, tensors, prefix }) {
    const targeted = modulesWith(params, '.ia3_l');
    const ff = new Set(feedforwardModules(model, config).map((m) => m.name));
    const out: Record<string, HostTensor> = {};
    for (const p of params) {
      const t = f32(tensors[p.name]);
      out[`${prefix}${p.name}`] = { ...t, shape: ff.has(moduleOf(p.name)) ? [1, t.shape[0]] : [t.shape[0], 1] };
    }
    const targets = peftTargets(model, targeted);
    // Reuse target names that select only feed-forward modules, or fall back to whole names for both.
    let feedforward = targets.filter((t) => targeted.filter((n) => n.endsWith(t)).every((n) => ff.has(n)));
    const mixed = targets.some((t) => {
      const hit = targeted.filter((n) => n.endsWith(t));
      return hit.some((n) => ff.has(n)) && hit.some((n) => !ff.has(n));
    });
    let targetList = targets;
    if (mixed) {
      targetList = targeted;
      feedforward = targeted.filter((n) => ff.has(n));
    }
    return {
      tensors: out,
      config: {
        target_modules: targetList,
        feedforward_modules: feedforward,
        init_ia3_weights: true,
        fan_in_fan_out: fanInFanOut(model, targeted),
      },
    };
  },

  import(site) {
    const { src, model } = site;
    const targets = needTargets(src);
    const found = new Map<string, Record<string, HostTensor>>();
    for (const [k, t] of src.tensors) {
      const m = /^(.*)\.ia3_l$/.exec(k);
      if (m) found.set(resolveModule(model, m[1], src, k), { ia3_l: t });
    }
    const selected = selectedModules(site, targets, found, [{ part: 'ia3_l', key: '.ia3_l' }], '(IA)³');
    const ff: string[] = [];
    const tensors: Record<string, HostTensor> = {};
    for (const name of selected) {
      const t = found.get(name)!.ia3_l;
      // [1, in] scales the input of a feed-forward module, [out, 1] the output.
      if (t.shape.length === 2 && t.shape[0] === 1 && t.shape[1] !== 1) ff.push(name);
      tensors[`${name}.ia3_l`] = { dtype: 'float32', shape: [t.data.length], data: t.data };
    }
    return {
      config: {
        method: 'ia3',
        target_modules: targetsFor(model, targets, selected),
        feedforward_modules: ff.length ? peftTargets(model, ff) : [],
      },
      tensors,
    };
  },
};
