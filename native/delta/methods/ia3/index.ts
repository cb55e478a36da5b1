// (IA)³ (Liu et al. 2022), as PEFT: learned vectors that rescale the keys, values and feed-forward inputs. Its life:
// the config below, the graph transform (transform.ts), the fold into the base weight (merge.ts), and PEFT's IA3
// adapter (peft.ts).
import { ADDRESSING_KEYS, registerMethod } from '../../registry.js';
import { ia3Merge } from './merge.js';
import { ia3Peft } from './peft.js';
import { applyIa3 } from './transform.js';

registerMethod({
  name: 'ia3',
  kind: 'reparameterization',
  title: '(IA)³',
  keys: {
    feedforward_modules: { type: 'strings-or-regex', doc: 'targets whose input (not output) is scaled' },
    ...ADDRESSING_KEYS,
  },
  apply: applyIa3,
  merge: ia3Merge,
  peft: ia3Peft,
});
