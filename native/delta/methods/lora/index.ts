// LoRA (Hu et al. 2021), as PEFT: a low-rank update B·A of a Linear/Conv1D weight, trained beside the frozen weight.
// Its life: the config below, the graph transform (transform.ts), the fold into the base weight (merge.ts), and
// PEFT's LORA adapter (peft.ts).
import { ADDRESSING_KEYS, registerMethod } from '../../registry.js';
import { loraMerge } from './merge.js';
import { loraPeft } from './peft.js';
import { applyLora, checkLora } from './transform.js';

export { loraScale, LORA_DEFAULT_TARGETS } from './transform.js';

registerMethod({
  name: 'lora',
  kind: 'reparameterization',
  title: 'LoRA',
  keys: {
    r: { type: 'integer', default: 8, doc: 'rank of the update' },
    alpha: { type: 'number', default: 8, doc: 'scale numerator', peft: 'lora_alpha' },
    dropout: {
      type: 'number',
      default: 0,
      doc: 'dropout on the branch input',
      trainingOnly: true,
      peft: 'lora_dropout',
    },
    rslora: { type: 'boolean', default: false, doc: 'scale by alpha/√r (rank-stabilised LoRA)', peft: 'use_rslora' },
    ...ADDRESSING_KEYS,
  },
  check: checkLora,
  apply: applyLora,
  merge: loraMerge,
  peft: loraPeft,
});
