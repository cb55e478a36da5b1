import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { HostTensor } from '../native/onnx/graph.js';
import { loadModel, type BuiltModel } from '../native/models/index.js';
import { openInline, type SessionHandle } from '../native/runtime/host.js';
import { Rng } from '../native/rng.js';
import { f64 } from './support/reference.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const names = existsSync(FIXTURES)
  ? readdirSync(FIXTURES).filter((n) => existsSync(join(FIXTURES, n, 'config.json')))
  : [];

const i64 = (rows: number[][], width: number, fill: number, left: boolean): HostTensor => ({
  dtype: 'int64',
  shape: [rows.length, width],
  data: BigInt64Array.from(
    rows.flatMap((r) => {
      const pad = Array<number>(width - r.length).fill(fill);
      return (left ? [...pad, ...r] : [...r, ...pad]).map(BigInt);
    }),
  ),
});

interface Example {
  src: number[];
  tgt?: number[];
}

function batch(m: BuiltModel, xs: Example[], left: boolean, pad: number): Record<string, HostTensor> {
  const S = Math.max(...xs.map((x) => x.src.length));
  const f: Record<string, HostTensor> = {
    input_ids: i64(
      xs.map((x) => x.src),
      S,
      pad,
      left,
    ),
    attention_mask: i64(
      xs.map((x) => x.src.map(() => 1)),
      S,
      0,
      left,
    ),
  };
  if (m.inputs.includes('token_type_ids'))
    f.token_type_ids = i64(
      xs.map((x) => x.src.map(() => 0)),
      S,
      0,
      left,
    );
  if (m.inputs.includes('decoder_input_ids')) {
    const T = Math.max(...xs.map((x) => x.tgt!.length));
    f.decoder_input_ids = i64(
      xs.map((x) => x.tgt!),
      T,
      pad,
      false,
    );
    f.decoder_attention_mask = i64(
      xs.map((x) => x.tgt!.map(() => 1)),
      T,
      0,
      false,
    );
  }
  return f;
}

async function logits(s: SessionHandle, f: Record<string, HostTensor>): Promise<HostTensor> {
  return (await s.run(f, ['logits'])).logits;
}

for (const name of names) {
  describe(`${name}: a padded batch gives each example's unbatched outputs`, () => {
    const dir = join(FIXTURES, name);
    test('right padding, and left padding for decoders', async () => {
      const m = loadModel(dir);
      const g = m.graph.clone();
      g.outputs.length = 0;
      g.output('logits');
      g.prune();
      const s = await openInline(g, { device: 'cpu' });
      const cfg = m.builder.folder.config;
      const V = Number(cfg.vocab_size);
      const pad = Number(cfg.pad_token_id ?? 0);
      const rng = new Rng(7);
      const ids = (n: number): number[] => Array.from({ length: n }, () => 4 + rng.int(V - 4));
      const xs: Example[] = [5, 3, 7].map((n, i) => ({
        src: ids(n),
        tgt: m.task === 'seq2seq' ? ids([4, 2, 3][i]) : undefined,
      }));
      const sides = m.task === 'causal-lm' ? [false, true] : [false];
      for (const left of sides) {
        const all = await logits(s, batch(m, xs, left, pad));
        for (const [k, x] of xs.entries()) {
          const one = f64(await logits(s, batch(m, [x], left, pad)));
          const got = f64(all);
          let worst = 0;
          if (m.task === 'classification' || m.task === 'regression') {
            const C = all.shape[1];
            for (let c = 0; c < C; c++)
              worst = Math.max(worst, Math.abs(got[k * C + c] - one[c]) / (Math.abs(one[c]) + 1e-3));
          } else {
            const [, T, Vo] = all.shape;
            const n = m.task === 'seq2seq' ? x.tgt!.length : x.src.length;
            const off = left && m.task === 'causal-lm' ? T - n : 0;
            for (let t = 0; t < n; t++)
              for (let v = 0; v < Vo; v++) {
                const a = got[(k * T + off + t) * Vo + v],
                  b = one[t * Vo + v];
                worst = Math.max(worst, Math.abs(a - b) / (Math.abs(b) + 1e-3));
              }
          }
          assert.ok(worst < 1e-4, `${left ? 'left' : 'right'} padding, example ${k}: relative difference ${worst}`);
        }
      }
      await s.release();
    });
  });
}
