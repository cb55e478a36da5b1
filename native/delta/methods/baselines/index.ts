// The paper's baselines: fine-tuning only the task head, and full fine-tuning of every weight. Both train existing
// weights, which a merged model holds as they are (an empty merge rule); PEFT keeps a trained head as
// modules_to_save beside an adapter, and has no adapter for either on its own.
import { registerMethod, type DeltaContext } from '../../registry.js';

/** The task head's weights: the classifier, score or LM head, and the pooler of BERT-like models. */
const HEADS = /^(classifier|score|lm_head)(\.|$)|^(bert|roberta)\.pooler\./;

registerMethod({
  name: 'head-only',
  kind: 'specification',
  title: 'head only (linear probing)',
  keys: {},
  apply(ctx: DeltaContext) {
    const names = [...ctx.model.builder.weightValues.keys()].filter((n) => HEADS.test(n));
    if (names.length === 0)
      throw new Error(
        `head-only: this ${ctx.model.architecture} has no separate task head (its output layer is tied to the embeddings)`,
      );
    for (const n of names) ctx.trainWeight(n);
    for (const m of ctx.model.modules) if (HEADS.test(`${m.name}.`)) ctx.mark(m);
  },
  merge: {},
  peft: {
    kind: 'modules_to_save',
    weights: HEADS,
    which: 'trained task heads only (classifier, score, lm_head, pooler)',
  },
});

registerMethod({
  name: 'full',
  kind: 'specification',
  title: 'full fine-tuning',
  keys: {},
  apply(ctx: DeltaContext) {
    for (const n of [...ctx.model.builder.weightValues.keys()]) ctx.trainWeight(n);
    for (const m of ctx.model.modules) ctx.mark(m);
  },
  merge: {},
});
