// LoRA's merge rule: W += s·B·A (s = alpha/r, or alpha/√r with rsLoRA), and W −= s·B·A to take it out. It wraps the
// module's output (y + s·B·A·x), so it folds in the order applied relative to an output-scaling (IA)³.
import { storedAt, type MergeRule } from '../../merge.js';
import { loraScale } from './transform.js';

export const loraMerge: MergeRule = {
  fold({ module, config, param }) {
    const r = config.r as number;
    const scale = loraScale({ r, alpha: config.alpha as number, rslora: config.rslora as boolean });
    const A = param(`${module.name}.lora_A`).data,
      B = param(`${module.name}.lora_B`).data;
    return {
      stage: 'output',
      weight(W, layout, sign) {
        const at = storedAt(layout);
        const inF = layout.in,
          s = sign * scale;
        // One row of B·A at a time, summed in float64.
        const row = new Float64Array(inF);
        for (let o = 0; o < layout.out; o++) {
          row.fill(0);
          for (let k = 0; k < r; k++) {
            const bk = B[o * r + k];
            if (bk === 0) continue;
            for (let i = 0; i < inF; i++) row[i] += bk * A[k * inF + i];
          }
          for (let i = 0; i < inF; i++) W[at(o, i)] += s * row[i];
        }
      },
    };
  },
};
