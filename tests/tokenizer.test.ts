// TextTokenizer: loading HF tokenizer folders, pairs, truncation, padding, batching and decoding.
// The expected ids are derived by hand from the tiny vocabularies in tests/fixtures/tokenizers/*:
//  wordpiece (BERT-like): [PAD]0 [UNK]1 [CLS]2 [SEP]3 [MASK]4 the5 cat6 sat7 on8 mat9 a10 dog11 ran12 play13 ##ing14
//    ##s15 .16 ,17 is18 it19 ?20 hello21 world22 !23; lowercasing; template [CLS] A [SEP] (B [SEP] with type 1).
//  gpt2 (byte-level BPE): the 256 byte symbols in GPT-2 order (so "."=13, "t"=83, "Ġ"=220 as in GPT-2), then
//    merges Ġt256 he257 Ġthe258 at259 Ġc260 Ġcat261 Ġs262 Ġsat263 The264 Ġo265 Ġon266 Ġm267 Ġmat268,
//    <|endoftext|>269; no special tokens added; no pad token.
//  roberta: <s>0 <pad>1 </s>2 <unk>3, bytes at 4 + GPT-2 id, the same merges at 260..272, <mask>273;
//    RobertaProcessing; pad token only in special_tokens_map.json.
//  llama (Metaspace + BPE with byte_fallback): <unk>0 <s>1 </s>2 <0x00>..<0xFF> 3..258, ▁259 t260 h261 e262
//    a263 c264 s265 T266 o267 n268 m269 .270 ▁t271 he272 ▁the273 at274 ▁c275 ▁cat276 ▁s277 ▁sat278 ▁T279
//    ▁The280 ▁o281 ▁on282 ▁m283 ▁mat284; template <s> A (<s>:1 B:1); padding_side left; no pad token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextTokenizer, type Int64Tensor } from '../native/models/tokenizer.js';

const here = dirname(fileURLToPath(import.meta.url));
const FIX = join(here, 'fixtures', 'tokenizers');
const MODELS = join(here, 'fixtures', 'models');
const load = (name: string): TextTokenizer => TextTokenizer.fromFolder(join(FIX, name));
const wp = load('wordpiece');
const gpt2 = load('gpt2');
const roberta = load('roberta');
const llama = load('llama');

const rows = (t: Int64Tensor): number[][] => {
  assert.equal(t.dtype, 'int64');
  assert.ok(t.data instanceof BigInt64Array);
  const [b, s] = t.shape;
  assert.equal(t.data.length, b * s);
  return Array.from({ length: b }, (_, r) => Array.from(t.data.subarray(r * s, (r + 1) * s), Number));
};

function withTmp(fn: (dir: string) => void): () => void {
  return () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ds-tok-'));
    try {
      fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

// ---------------------------------------------------------------- loading

test('loads a WordPiece folder: sizes, special ids, padding side', () => {
  assert.equal(wp.vocabSize, 24);
  assert.equal(wp.padId, 0);
  assert.equal(wp.padToken, '[PAD]');
  assert.equal(wp.unkId, 1);
  assert.equal(wp.bosId, undefined);
  assert.equal(wp.eosId, undefined);
  assert.equal(wp.paddingSide, 'right');
  assert.equal(wp.modelMaxLength, 512);
  assert.deepEqual(wp.notes, []);
  assert.equal(wp.numSpecialTokens(false), 2);
  assert.equal(wp.numSpecialTokens(true), 3);
});

test('special tokens come from tokenizer_config.json, special_tokens_map.json (AddedToken dicts) and fall back', () => {
  assert.deepEqual([roberta.vocabSize, roberta.padId, roberta.bosId, roberta.eosId, roberta.unkId], [274, 1, 0, 2, 3]);
  assert.equal(roberta.tokenToId('<mask>'), 273); // mask_token is a dict in special_tokens_map.json
  assert.deepEqual([roberta.numSpecialTokens(false), roberta.numSpecialTokens(true)], [2, 4]);
  // GPT-2 has no pad token: padding uses eos, and says so.
  assert.deepEqual([gpt2.vocabSize, gpt2.padId, gpt2.eosId, gpt2.bosId], [270, 269, 269, 269]);
  assert.equal(gpt2.numSpecialTokens(true), 0);
  assert.equal(gpt2.notes.length, 1);
  assert.match(gpt2.notes[0], /no pad token: padding uses the eos token "<\|endoftext\|>" \(id 269\)/);
  assert.deepEqual([llama.vocabSize, llama.padId, llama.bosId, llama.eosId, llama.unkId], [285, 2, 1, 2, 0]);
  assert.equal(llama.paddingSide, 'left'); // from tokenizer_config.json
  assert.match(llama.notes.join('\n'), /eos token "<\/s>" \(id 2\)/);
});

// ---------------------------------------------------------------- single and pair encoding

test('WordPiece: single text gets [CLS] … [SEP], lowercased, unknown words become [UNK]', () => {
  assert.deepEqual(wp.encode('The cat sat on the mat.'), {
    ids: [2, 5, 6, 7, 8, 5, 9, 16, 3],
    typeIds: [0, 0, 0, 0, 0, 0, 0, 0, 0],
    tokens: ['[CLS]', 'the', 'cat', 'sat', 'on', 'the', 'mat', '.', '[SEP]'],
    truncated: false,
  });
  assert.deepEqual(wp.encode('A zebra is playing').ids, [2, 10, 1, 18, 13, 14, 3]);
  assert.deepEqual(wp.encode('').ids, [2, 3]);
});

test('WordPiece: a pair follows the template, type ids 0 then 1', () => {
  const e = wp.encode('The cat sat.', 'A dog is playing!');
  assert.deepEqual(e.ids, [2, 5, 6, 7, 16, 3, 10, 11, 18, 13, 14, 23, 3]);
  assert.deepEqual(e.typeIds, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
});

test('addSpecialTokens: false leaves the template out but keeps the pair type ids', () => {
  const e = wp.encode('the cat', 'a dog', { addSpecialTokens: false });
  assert.deepEqual(e.ids, [5, 6, 10, 11]);
  assert.deepEqual(e.typeIds, [0, 0, 1, 1]);
  const b = wp.encodeBatch(['the cat'], { addSpecialTokens: false, maxLength: 1 });
  assert.deepEqual(rows(b.input_ids), [[5]]); // no special tokens to make room for
});

test('byte-level BPE (GPT-2): no special tokens; a pair is A then B with type ids 0 then 1', () => {
  assert.deepEqual(gpt2.encode('The cat sat on the mat.').ids, [264, 261, 263, 266, 258, 268, 13]);
  // "the" without a leading space has no "t he" merge: t(83) he(257)
  const e = gpt2.encode('The cat', 'the mat');
  assert.deepEqual(e.ids, [264, 261, 83, 257, 268]);
  assert.deepEqual(e.typeIds, [0, 0, 1, 1, 1]);
});

test('RobertaProcessing: <s> A </s></s> B </s>, every type id 0 (as the Rust tokenizers)', () => {
  assert.deepEqual(roberta.encode('The cat sat on the mat.').ids, [0, 268, 265, 267, 270, 262, 272, 17, 2]);
  const e = roberta.encode('The cat', 'the mat');
  assert.deepEqual(e.ids, [0, 268, 265, 2, 2, 87, 261, 272, 2]);
  assert.deepEqual(e.typeIds, [0, 0, 0, 0, 0, 0, 0, 0, 0]);
  // longest_first with the 4 special tokens of a pair: budget 7 - 4 = 3 over (2, 3) tokens. Keeping the shorter
  // whole would leave the longer shorter than it, so the budget is split, the odd token to the longer: (1, 2).
  // (The slow Python tokenizers, removing one token at a time, would give (2, 1).)
  assert.deepEqual(roberta.encode('The cat', 'the mat', { maxLength: 7 }).ids, [0, 268, 2, 2, 87, 261, 2]);
});

test('Metaspace + byte_fallback (Llama): <s> prepended, unknown characters become byte tokens', () => {
  assert.deepEqual(llama.encode('The cat sat on the mat.').ids, [1, 280, 276, 278, 282, 273, 284, 270]);
  // é is not in the vocabulary: UTF-8 bytes C3 A9 -> <0xC3>=3+0xC3=198, <0xA9>=3+0xA9=172
  assert.deepEqual(llama.encode('cat é').ids, [1, 276, 259, 198, 172]);
  const p = llama.encode('The cat', 'the mat');
  assert.deepEqual(p.ids, [1, 280, 276, 1, 273, 284]);
  assert.deepEqual(p.typeIds, [0, 0, 0, 1, 1, 1]);
});

test(
  'a Sequence post-processor [ByteLevel, TemplateProcessing] (Llama 3 / Qwen style) applies the template',
  withTmp((dir) => {
    const json = JSON.parse(readFileSync(join(FIX, 'gpt2', 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    const eot = { SpecialToken: { id: '<|endoftext|>', type_id: 0 } };
    json.post_processor = {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [eot, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [
            eot,
            { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: '<|endoftext|>', type_id: 1 } },
            { Sequence: { id: 'B', type_id: 1 } },
          ],
          special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [269], tokens: ['<|endoftext|>'] } },
        },
      ],
    };
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
    const t = TextTokenizer.fromFolder(dir);
    assert.deepEqual([t.numSpecialTokens(false), t.numSpecialTokens(true)], [1, 2]);
    assert.deepEqual(t.encode('The cat').ids, [269, 264, 261]);
    const p = t.encode('The cat', 'the mat');
    assert.deepEqual(p.ids, [269, 264, 261, 269, 83, 257, 268]);
    assert.deepEqual(p.typeIds, [0, 0, 0, 1, 1, 1, 1]);
    assert.equal(t.padId, -1); // no tokenizer_config.json here: no eos to fall back on
  }),
);

test('unknown option values are rejected', () => {
  assert.throws(
    () => wp.encode('the cat', undefined, { truncation: 'shortest' as never }),
    /unknown truncation "shortest"/,
  );
  assert.throws(() => wp.encodeBatch(['the cat'], { padding: 'all' as never }), /unknown padding "all"/);
  assert.throws(() => wp.encodeBatch(['the cat'], { paddingSide: 'up' as never }), /unknown paddingSide "up"/);
});

// ---------------------------------------------------------------- truncation

test('longest_first on a pair: cuts the longer part first, then both', () => {
  // A = the cat sat . (4), B = a dog is play ##ing ! (6), 3 special tokens.
  // maxLength 11: budget 8, A stays whole, B keeps 4.
  const e11 = wp.encode('The cat sat.', 'A dog is playing!', { maxLength: 11 });
  assert.deepEqual(e11.ids, [2, 5, 6, 7, 16, 3, 10, 11, 18, 13, 3]);
  assert.deepEqual(e11.typeIds, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
  assert.equal(e11.truncated, true);
  // maxLength 9: budget 6 < 2 × 4, both keep 3.
  const e9 = wp.encode('The cat sat.', 'A dog is playing!', { maxLength: 9, truncation: 'longest_first' });
  assert.deepEqual(e9.ids, [2, 5, 6, 7, 3, 10, 11, 18, 3]);
  assert.deepEqual(e9.typeIds, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
  // Equal lengths (4, 4), odd budget 5: the Rust tokenizers (fast tokenizers) give the odd token to the second text.
  assert.deepEqual(wp.encode('the cat sat on', 'a dog ran .', { maxLength: 8 }).ids, [2, 5, 6, 3, 10, 11, 12, 3]);
  // Fits: nothing cut.
  assert.equal(wp.encode('The cat sat.', 'A dog is playing!', { maxLength: 13 }).truncated, false);
});

test('longest_first on single texts in a batch; truncated and lengths per row', () => {
  const b = wp.encodeBatch(['the cat sat on the mat', 'a dog'], { maxLength: 5 });
  assert.deepEqual(rows(b.input_ids), [
    [2, 5, 6, 7, 3],
    [2, 10, 11, 3, 0],
  ]);
  assert.deepEqual(rows(b.attention_mask), [
    [1, 1, 1, 1, 1],
    [1, 1, 1, 1, 0],
  ]);
  assert.deepEqual(b.lengths, [5, 4]);
  assert.deepEqual(b.truncated, [true, false]);
});

test('truncationSide left keeps the end of the text', () => {
  assert.deepEqual(
    wp.encode('the cat sat on the mat', undefined, { maxLength: 4, truncationSide: 'left' }).ids,
    [2, 5, 9, 3],
  );
});

test('only_second and only_first cut one part only', () => {
  // budget 7 over (4, 6): 3 tokens go from B
  const e = wp.encode('The cat sat.', 'A dog is playing!', { maxLength: 10, truncation: 'only_second' });
  assert.deepEqual(e.ids, [2, 5, 6, 7, 16, 3, 10, 11, 18, 3]);
  assert.deepEqual(e.typeIds, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
  // budget 8 over (4, 6): 2 tokens go from A
  const f = wp.encode('The cat sat.', 'A dog is playing!', { maxLength: 11, truncation: 'only_first' });
  assert.deepEqual(f.ids, [2, 5, 6, 3, 10, 11, 18, 13, 14, 23, 3]);
});

test('only_second / only_first that cannot fit throw a clear error', () => {
  assert.throws(
    () => wp.encode('The cat sat.', 'A dog is playing!', { maxLength: 7, truncation: 'only_second' }),
    /row 0: truncation 'only_second' cannot fit maxLength 7: the second text has 6 tokens and 6 must go/,
  );
  assert.throws(
    () =>
      wp.encodeBatch(
        [
          ['the cat', 'a dog'],
          ['The cat sat.', 'A dog is playing!'],
        ],
        { maxLength: 9, truncation: 'only_first' },
      ),
    /row 1: truncation 'only_first' cannot fit maxLength 9: the first text has 4 tokens and 4 must go/,
  );
  assert.throws(
    () => wp.encode('the cat sat', undefined, { maxLength: 3, truncation: 'only_second' }),
    /truncation 'only_second' needs a text pair/,
  );
});

test('maxLength smaller than the special tokens is an error; equal to them leaves only the special tokens', () => {
  assert.throws(
    () => wp.encode('the cat', 'a dog', { maxLength: 2 }),
    /maxLength 2 is smaller than the 3 special tokens the post-processor adds to a pair of texts/,
  );
  assert.throws(
    () => roberta.encodeBatch(['the cat'], { maxLength: 1 }),
    /maxLength 1 is smaller than the 2 special tokens/,
  );
  assert.deepEqual(wp.encode('the cat', undefined, { maxLength: 2 }).ids, [2, 3]);
});

test(
  "truncation without maxLength uses model_max_length; truncation 'none' keeps everything",
  withTmp((dir) => {
    copyFileSync(join(FIX, 'wordpiece', 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const config = JSON.parse(readFileSync(join(FIX, 'wordpiece', 'tokenizer_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...config, model_max_length: 4 }));
    const t = TextTokenizer.fromFolder(dir);
    assert.deepEqual(t.encode('the cat sat on', undefined, { truncation: 'longest_first' }).ids, [2, 5, 6, 3]);
    assert.deepEqual(t.encode('the cat sat on').ids, [2, 5, 6, 7, 8, 3]); // no truncation unless asked
    assert.deepEqual(
      t.encode('the cat sat on', undefined, { maxLength: 3, truncation: 'none' }).ids,
      [2, 5, 6, 7, 8, 3],
    );
  }),
);

// ---------------------------------------------------------------- padding and batches

test('padding longest, right (the default here): pad id, attention mask 0, type ids 0 on padding', () => {
  const b = wp.encodeBatch(['the cat', 'a dog is playing']);
  assert.deepEqual(b.input_ids.shape, [2, 7]);
  assert.deepEqual(rows(b.input_ids), [
    [2, 5, 6, 3, 0, 0, 0],
    [2, 10, 11, 18, 13, 14, 3],
  ]);
  assert.deepEqual(rows(b.attention_mask), [
    [1, 1, 1, 1, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 1],
  ]);
  assert.deepEqual(rows(b.token_type_ids), [
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
  ]);
  assert.deepEqual(b.lengths, [4, 7]);
  assert.deepEqual(b.truncated, [false, false]);
});

test('padding left puts the pad ids first', () => {
  const b = wp.encodeBatch(['the cat', 'a dog is playing'], { paddingSide: 'left' });
  assert.deepEqual(rows(b.input_ids), [
    [0, 0, 0, 2, 5, 6, 3],
    [2, 10, 11, 18, 13, 14, 3],
  ]);
  assert.deepEqual(rows(b.attention_mask), [
    [0, 0, 0, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1],
  ]);
});

test('pairs in a batch: type ids 1 on the second text, 0 on padding', () => {
  const b = wp.encodeBatch(
    [
      ['the cat', 'a dog'],
      ['it sat', 'the mat is on a cat'],
    ],
    { paddingSide: 'right' },
  );
  assert.deepEqual(rows(b.input_ids), [
    [2, 5, 6, 3, 10, 11, 3, 0, 0, 0, 0],
    [2, 19, 7, 3, 5, 9, 18, 8, 10, 6, 3],
  ]);
  assert.deepEqual(rows(b.token_type_ids), [
    [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
  ]);
  assert.deepEqual(rows(b.attention_mask)[0], [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
});

test('padding max_length pads every row to maxLength (and truncates longer ones)', () => {
  const b = wp.encodeBatch(['the cat', 'a dog'], { padding: 'max_length', maxLength: 6 });
  assert.deepEqual(rows(b.input_ids), [
    [2, 5, 6, 3, 0, 0],
    [2, 10, 11, 3, 0, 0],
  ]);
  assert.deepEqual(rows(b.attention_mask), [
    [1, 1, 1, 1, 0, 0],
    [1, 1, 1, 1, 0, 0],
  ]);
  const c = wp.encodeBatch(['the cat sat on the mat'], { padding: 'max_length', maxLength: 4 });
  assert.deepEqual(rows(c.input_ids), [[2, 5, 6, 3]]);
  // with truncation 'none' a longer row cannot be cut: the batch is as long as it
  const d = wp.encodeBatch(['the cat sat on the mat', 'a dog'], {
    padding: 'max_length',
    maxLength: 4,
    truncation: 'none',
  });
  assert.deepEqual(rows(d.input_ids), [
    [2, 5, 6, 7, 8, 5, 9, 3],
    [2, 10, 11, 3, 0, 0, 0, 0],
  ]);
});

test("padding 'none' needs rows of one length", () => {
  const b = wp.encodeBatch(['the cat', 'a dog'], { padding: 'none' });
  assert.deepEqual(rows(b.input_ids), [
    [2, 5, 6, 3],
    [2, 10, 11, 3],
  ]);
  assert.throws(
    () => wp.encodeBatch(['the cat', 'a dog ran'], { padding: 'none' }),
    /padding 'none' but rows have different lengths/,
  );
});

test('no pad token: GPT-2 pads with eos (mask 0), Llama pads left with eos by its config', () => {
  const g = gpt2.encodeBatch(['The cat', 'The cat sat']);
  assert.deepEqual(rows(g.input_ids), [
    [264, 261, 269],
    [264, 261, 263],
  ]);
  assert.deepEqual(rows(g.attention_mask), [
    [1, 1, 0],
    [1, 1, 1],
  ]);
  const l = llama.encodeBatch(['The cat', 'The cat sat on the mat.']);
  assert.deepEqual(rows(l.input_ids), [
    [2, 2, 2, 2, 2, 1, 280, 276],
    [1, 280, 276, 278, 282, 273, 284, 270],
  ]);
  assert.deepEqual(rows(l.attention_mask), [
    [0, 0, 0, 0, 0, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
  ]);
  const r = llama.encodeBatch(['The cat', 'The cat sat'], { paddingSide: 'right' });
  assert.deepEqual(rows(r.input_ids), [
    [1, 280, 276, 2],
    [1, 280, 276, 278],
  ]);
});

test('an empty batch is a [0, 0] tensor; mixed singles and pairs are rejected', () => {
  const b = wp.encodeBatch([]);
  assert.deepEqual(b.input_ids.shape, [0, 0]);
  assert.equal(b.input_ids.data.length, 0);
  assert.throws(
    () => wp.encodeBatch(['a', ['b', 'c']] as unknown as string[]),
    /a batch is all single texts or all pairs/,
  );
});

// ---------------------------------------------------------------- decode

test('decode round trips, with and without special tokens', () => {
  const ids = wp.encode('The cat sat on the mat.').ids;
  assert.equal(wp.decode(ids, true), 'the cat sat on the mat.');
  assert.equal(wp.decode(ids), '[CLS] the cat sat on the mat. [SEP]');
  assert.equal(wp.decode([5, 13, 14]), 'the playing');
  assert.equal(gpt2.decode(gpt2.encode('The cat sat on the mat.').ids), 'The cat sat on the mat.');
  assert.equal(roberta.decode(roberta.encode('The cat sat on the mat.').ids, true), 'The cat sat on the mat.');
  assert.equal(llama.decode(llama.encode('cat é').ids, true), 'cat é');
  assert.equal(llama.decode(llama.encode('The cat sat on the mat.').ids), '<s> The cat sat on the mat.');
  // padding comes back out with skipSpecial
  const padded = rows(llama.encodeBatch(['The cat', 'The cat sat on']).input_ids)[0];
  assert.equal(llama.decode(padded, true), 'The cat');
  assert.equal(wp.decode([]), '');
  assert.equal(wp.decode([5, 999, 6]), 'the cat'); // ids with no token are skipped
});

// ---------------------------------------------------------------- errors

test(
  'errors: a missing folder, a folder without tokenizer.json',
  withTmp((dir) => {
    assert.throws(
      () => TextTokenizer.fromFolder(join(dir, 'nope')),
      new RegExp(`^Error: ${esc(join(dir, 'nope'))}: not a folder$`),
    );
    assert.throws(
      () => TextTokenizer.fromFolder(dir),
      (e: Error) => e.message === `${dir}: no tokenizer.json`,
    );
  }),
);

test(
  'errors: tokenizer.json or tokenizer_config.json that is not JSON',
  withTmp((dir) => {
    const file = join(dir, 'tokenizer.json');
    writeFileSync(file, '{ "model": ');
    // Where and what, never the text itself.
    assert.throws(
      () => TextTokenizer.fromFolder(dir),
      (e: Error) => e.message === `${file}: not valid JSON (line 1, column 12: the text ends where a value should be)`,
    );
    copyFileSync(join(FIX, 'wordpiece', 'tokenizer.json'), file);
    const cfg = join(dir, 'tokenizer_config.json');
    writeFileSync(cfg, 'pad_token: [PAD]');
    assert.throws(
      () => TextTokenizer.fromFolder(dir),
      (e: Error) =>
        e.message.startsWith(`${cfg}: not valid JSON (line 1, column 1: `) && !e.message.includes('pad_token'),
    );
    writeFileSync(file, '[1, 2]');
    assert.throws(() => TextTokenizer.fromFolder(dir), new RegExp(`${esc(file)}: not valid JSON: expected an object`));
  }),
);

test(
  'errors: a tokenizer.json the library cannot build',
  withTmp((dir) => {
    const file = join(dir, 'tokenizer.json');
    writeFileSync(file, JSON.stringify({ version: '1.0', added_tokens: [], model: { type: 'Nonsense' } }));
    assert.throws(
      () => TextTokenizer.fromFolder(dir),
      (e: Error) => e.message === `${file}: cannot build the tokenizer: Unknown TokenizerModel type: Nonsense`,
    );
    writeFileSync(file, JSON.stringify({ version: '1.0', added_tokens: [] }));
    assert.throws(
      () => TextTokenizer.fromFolder(dir),
      new RegExp(`^Error: ${esc(file)}: cannot build the tokenizer: `),
    );
  }),
);

test(
  'errors: no pad token and no eos token to fall back on, when padding is needed',
  withTmp((dir) => {
    copyFileSync(join(FIX, 'gpt2', 'tokenizer.json'), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'GPT2Tokenizer' }));
    const t = TextTokenizer.fromFolder(dir);
    assert.equal(t.padId, -1);
    assert.equal(t.eosId, undefined);
    // rows of one length need no padding
    assert.deepEqual(rows(t.encodeBatch(['The cat', 'The mat']).input_ids), [
      [264, 261],
      [264, 268],
    ]);
    assert.throws(() => t.encodeBatch(['The cat', 'The cat sat']), /no pad token/);
    assert.throws(() => t.encodeBatch(['The cat'], { padding: 'max_length', maxLength: 4 }), /no pad token/);
    // and with no model_max_length, padding 'max_length' / truncation need an explicit maxLength
    assert.throws(() => t.encodeBatch(['The cat'], { padding: 'max_length' }), /padding 'max_length' needs maxLength/);
    assert.throws(
      () => t.encode('The cat', undefined, { truncation: 'longest_first' }),
      /truncation 'longest_first' needs maxLength/,
    );
  }),
);

// ---------------------------------------------------------------- the model fixtures

test('every tests/fixtures/models/*/tokenizer.json loads and encodes within the model vocab_size', (t) => {
  const dirs = existsSync(MODELS)
    ? readdirSync(MODELS).filter((d) => existsSync(join(MODELS, d, 'tokenizer.json')))
    : [];
  if (dirs.length === 0) {
    t.skip('no model fixtures with a tokenizer.json');
    return;
  }
  for (const d of dirs) {
    const dir = join(MODELS, d);
    const tok = TextTokenizer.fromFolder(dir);
    const configFile = join(dir, 'config.json');
    const vocab = existsSync(configFile)
      ? (JSON.parse(readFileSync(configFile, 'utf8')) as { vocab_size?: number }).vocab_size
      : undefined;
    const e = tok.encode('The cat sat on the mat.');
    assert.ok(e.ids.length > 0, `${d}: no ids`);
    const limit = vocab ?? tok.vocabSize;
    for (const id of e.ids)
      assert.ok(Number.isInteger(id) && id >= 0 && id < limit, `${d}: id ${id} outside [0, ${limit})`);
    const b = tok.encodeBatch(['The cat sat on the mat.', 'A dog.'], { maxLength: 16 });
    assert.equal(b.input_ids.shape[0], 2, d);
    for (const v of b.input_ids.data)
      assert.ok(v >= 0n && v < BigInt(limit), `${d}: batch id ${v} outside [0, ${limit})`);
  }
});

test(
  'a nested empty folder is a folder without tokenizer.json',
  withTmp((dir) => {
    const sub = join(dir, 'model');
    mkdirSync(sub);
    assert.throws(
      () => TextTokenizer.fromFolder(sub),
      (e: Error) => e.message === `${sub}: no tokenizer.json`,
    );
  }),
);
