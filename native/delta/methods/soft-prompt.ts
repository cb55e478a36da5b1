// Soft prompt (Lester et al. 2021; OpenDelta SoftPrompt, PEFT prompt tuning): trainable virtual tokens prepended to
// the (encoder) input embeddings, with the attention mask extended; decoders ignore them in the loss. They start as
// uniform(±init_range) vectors, as embeddings of vocabulary tokens drawn at random, or as the embeddings of a text.
import { toFloat32 } from '../../onnx/dtype.js';
import { readTensorBytes } from '../../onnx/safetensors.js';
import { TextTokenizer } from '../../models/tokenizer.js';
import { registerMethod } from '../registry.js';

const EMBEDDINGS =
  /^((bert|roberta)\.)?embeddings\.word_embeddings\.weight$|^(transformer\.)?wte\.weight$|^(model\.)?embed_tokens\.weight$|^shared\.weight$/;

registerMethod({
  name: 'soft_prompt',
  kind: 'addition',
  title: 'Soft prompt (prompt tuning)',
  keys: {
    soft_token_num: { type: 'integer', default: 100, doc: 'number of virtual tokens' },
    init: {
      type: 'string',
      default: 'random',
      doc: 'random (uniform ±init_range), vocab (embeddings of random tokens) or text (embeddings of init_text)',
    },
    init_range: { type: 'number', default: 0.5, doc: 'bound of the uniform initialisation' },
    init_text: { type: 'string', doc: 'text whose token embeddings start the prompt (repeated to fill it)' },
  },
  build(cfg) {
    const n = cfg.soft_token_num as number;
    if (n < 1) throw new Error(`soft_prompt: soft_token_num must be at least 1, got ${n}`);
    return { softPromptTokens: n };
  },
  apply(ctx, cfg) {
    const P = cfg.soft_token_num as number,
      D = ctx.model.dims.hidden;
    const init = cfg.init as string;
    const data = new Float32Array(P * D);
    if (init === 'random') {
      const r = cfg.init_range as number;
      for (let i = 0; i < data.length; i++) data[i] = ctx.rng.uniform(-r, r);
    } else if (init === 'vocab' || init === 'text') {
      const folder = ctx.model.builder.folder;
      const name = [...folder.weights.keys()].find((n) => EMBEDDINGS.test(n));
      if (!name) throw new Error(`soft_prompt: no token embedding found in ${folder.dir}`);
      const ref = folder.weights.get(name)!;
      const table = toFloat32(ref.dtype, readTensorBytes(ref));
      const [V] = ref.shape;
      let ids: number[];
      if (init === 'vocab') ids = Array.from({ length: P }, () => ctx.rng.int(V));
      else {
        if (!cfg.init_text) throw new Error('soft_prompt: init "text" needs init_text');
        const enc = TextTokenizer.fromFolder(folder.dir).encode(cfg.init_text as string, undefined, {
          addSpecialTokens: false,
        }).ids;
        if (enc.length === 0) throw new Error('soft_prompt: init_text has no tokens');
        ids = Array.from({ length: P }, (_, i) => enc[i % enc.length]);
      }
      ids.forEach((id, i) => data.set(table.subarray(id * D, id * D + D), i * D));
    } else {
      throw new Error(`soft_prompt: init must be random, vocab or text, got "${init}"`);
    }
    ctx.adoptParam('soft_prompt.embedding', { dtype: 'float32', shape: [P, D], data });
    ctx.mark('soft_prompt');
  },
});
