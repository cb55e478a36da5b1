import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ModelBuilder } from '../native/models/builder.js';
import { readModelFolder } from '../native/models/folder.js';
import { relativePositionBucket } from '../native/models/t5.js';
import { TextTokenizer } from '../native/models/tokenizer.js';
import { readSafetensorsHeader } from '../native/onnx/safetensors.js';
import { openInline } from '../native/runtime/host.js';
import { f64, readReference } from './support/reference.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const names = existsSync(FIXTURES)
  ? readdirSync(FIXTURES).filter((n) => existsSync(join(FIXTURES, n, 'reference.safetensors')))
  : [];

describe('tokenizing the reference texts gives the ids PyTorch was run on', () => {
  for (const name of names) {
    test(name, () => {
      const dir = join(FIXTURES, name);
      const meta = readSafetensorsHeader(join(dir, 'reference.safetensors')).metadata;
      const ref = readReference(dir);
      const tok = TextTokenizer.fromFolder(dir);
      const ids = ref.get('input_ids')!;
      const S = ids.shape[1];
      const mask = f64(ref.get('attention_mask')!);
      const want = f64(ids);
      const types = ref.has('token_type_ids') ? f64(ref.get('token_type_ids')!) : undefined;
      for (const row of [0, 1]) {
        // Row 0 of BERT's batch is a text pair, row 1 a single text: encoded one by one, padded by the reference.
        const e = tok.encode(meta[`text_${row}`], meta[`text_pair_${row}`]);
        const n = mask.slice(row * S, row * S + S).reduce((a, b) => a + b, 0);
        assert.deepEqual(e.ids, Array.from(want.slice(row * S, row * S + n)), `row ${row} ids`);
        if (types) assert.deepEqual(e.typeIds, Array.from(types.slice(row * S, row * S + n)), `row ${row} token types`);
      }
      if (!meta.text_pair_0) {
        const enc = tok.encodeBatch([meta.text_0, meta.text_1], {
          padding: 'max_length',
          maxLength: S,
          paddingSide: 'right',
        });
        assert.deepEqual(Array.from(f64(enc.attention_mask)), Array.from(mask));
        const got = f64(enc.input_ids);
        for (let i = 0; i < want.length; i++) if (mask[i] === 1) assert.equal(got[i], want[i], `token ${i}`);
      }
      if (meta.target_0) {
        const labels = f64(ref.get('labels')!);
        const T = ref.get('labels')!.shape[1];
        const tgt = tok.encodeBatch([meta.target_0, meta.target_1], { padding: 'max_length', maxLength: T });
        const t = f64(tgt.input_ids);
        for (let i = 0; i < labels.length; i++)
          if (labels[i] !== -100) assert.equal(t[i], labels[i], `target token ${i}`);
      }
      const V = Number(readModelFolder(dir).config.vocab_size);
      assert.ok(tok.vocabSize <= V, `tokenizer has ${tok.vocabSize} ids, the model ${V} rows`);
    });
  }
});

test("T5 relative position buckets equal transformers' for offsets −200…200 (exact, log-spaced and clamped)", async () => {
  const ref = readReference(join(FIXTURES, 't5'));
  const rel = ref.get('rel_bucket.relative_position')!;
  const b = new ModelBuilder(readModelFolder(join(FIXTURES, 't5')));
  const x = b.g.input('rel', 'int64', rel.shape);
  b.g.output(relativePositionBucket(b, x, true, 32, 128), 'bi');
  b.g.output(relativePositionBucket(b, x, false, 32, 128), 'causal');
  const s = await openInline(b.g, { device: 'cpu' });
  const out = await s.run({ rel });
  assert.deepEqual(Array.from(f64(out.bi)), Array.from(f64(ref.get('rel_bucket.bidirectional')!)));
  assert.deepEqual(Array.from(f64(out.causal)), Array.from(f64(ref.get('rel_bucket.causal')!)));
  assert.ok(rel.shape[0] >= 401);
  await s.release();
});
