// BitFit's merge rule. Trained existing biases are plain weights already; a new bias is plain only where the model
// has a bias it adds to: a normalisation module's (LayerNorm) for a `.bitfit_bias`. A bias added to a Linear that has
// none (Llama, T5), or to an RMSNorm, has no weight to go to in the Hugging Face architecture.
import type { BuiltModel } from '../../../models/types.js';
import type { MergeRule, Placement } from '../../merge.js';

const NORM_BIAS = '.bitfit_bias';

export const bitfitMerge: MergeRule = {
  place(param: string, model: BuiltModel): Placement {
    const cannot = (what: string): Placement => ({
      refused: `bitfit added a bias to ${what}, which has none in ${model.architecture}; a merged folder cannot hold it`,
    });
    if (!param.endsWith(NORM_BIAS)) return cannot(param.replace(/\.bias$/, ''));
    const name = param.slice(0, -NORM_BIAS.length);
    const rec = model.modules.find((m) => m.name === name);
    if (!rec) throw new Error(`export: module ${name} is not in the ${model.architecture} graph`);
    const bias = `${rec.name}.bias`;
    if (rec.type !== 'LayerNorm' || !model.builder.weightValues.has(bias)) return cannot(`${rec.name} (${rec.type})`);
    return { addTo: bias };
  },
};
