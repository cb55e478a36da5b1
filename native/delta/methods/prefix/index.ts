// Prefix tuning (Li & Liang 2021), as PEFT with prefix_projection: trainable key/value prefixes in every
// self-attention, trained through an MLP or directly. Its life: the config below, the graph transform (transform.ts),
// and PEFT's PREFIX_TUNING adapter (peft.ts). No weight of the model can hold it, so it does not merge.
import { registerMethod } from '../../registry.js';
import { prefixPeft } from './peft.js';
import { applyPrefix, buildPrefix } from './transform.js';

export { projectPrefix } from './transform.js';

registerMethod({
  name: 'prefix',
  kind: 'addition',
  title: 'Prefix tuning',
  keys: {
    prefix_token_num: { type: 'integer', default: 6, doc: 'prefix length', peft: 'num_virtual_tokens' },
    mid_dim: {
      type: 'integer',
      default: 512,
      doc: 'width of the reparameterisation MLP',
      peft: 'encoder_hidden_size',
    },
    reparameterize: {
      type: 'boolean',
      default: true,
      doc: 'train through the MLP (false: train the prefixes directly)',
      peft: 'prefix_projection',
    },
  },
  build: buildPrefix,
  apply: applyPrefix,
  // A plugin may keep the projected prefixes themselves (the MLP is a training aid): it is built without the MLP then.
  forPluginTensors(cfg, has) {
    if (cfg.reparameterize !== false && has('prefix.key_values') && !has('prefix.embedding'))
      return { ...cfg, reparameterize: false };
    return cfg;
  },
  cannotMerge: 'it prepends learned keys and values to every attention, which no weight of the model can hold',
  peft: prefixPeft,
});
