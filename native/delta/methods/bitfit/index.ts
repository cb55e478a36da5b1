// BitFit (Ben Zaken et al. 2021), as OpenDelta: only biases train. Its life: the config below, the graph transform
// (transform.ts) and where its biases go in a merged model (merge.ts); PEFT has no BitFit adapter.
import { ADDRESSING_KEYS, registerMethod } from '../../registry.js';
import { bitfitMerge } from './merge.js';
import { applyBitfit } from './transform.js';

registerMethod({
  name: 'bitfit',
  kind: 'specification',
  title: 'BitFit',
  keys: { ...ADDRESSING_KEYS },
  apply: applyBitfit,
  merge: bitfitMerge,
});
