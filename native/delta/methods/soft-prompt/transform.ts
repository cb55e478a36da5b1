// Soft prompt's graph transform: P virtual tokens prepended to the (encoder) input embeddings — the model is built
// with them (build), and apply gives them their starting values: uniform(±init_range), the embeddings of vocabulary
// tokens drawn at random, or the embeddings of a text.
import { toFloat32 } from '../../../onnx/dtype.js';
import { readTensorBytes } from '../../../onnx/safetensors.js';
import { TextTokenizer } from '../../../models/tokenizer.js';
import type { BuildDeltas } from '../../../models/types.js';
import type { DeltaContext } from '../../registry.js';

const EMBEDDINGS =
  /^((bert|roberta)\.)?embeddings\.word_embeddings\.weight$|^(transformer\.)?wte\.weight$|^(model\.)?embed_tokens\.weight$|^shared\.weight$/;

export function buildSoftPrompt(cfg: Record<string, unknown>): BuildDeltas {
  const n = cfg.soft_token_num as number;
  if (n < 1) throw new Error(`soft_prompt: soft_token_num must be at least 1, got ${n}`);
  return { softPromptTokens: n };
}

export function applySoftPrompt(ctx: DeltaContext, cfg: Record<string, unknown>): void {
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
}
