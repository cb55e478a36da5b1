import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { HostTensor } from '../native/onnx/graph.js';
import { loadModel } from '../native/models/index.js';
import { openInline } from '../native/runtime/host.js';
import { f64 } from './support/reference.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const i64 = (rows: number[][]): HostTensor => ({
  dtype: 'int64',
  shape: [rows.length, rows[0].length],
  data: BigInt64Array.from(rows.flat().map(BigInt)),
});

describe('task heads', () => {
  test('regression on BERT: one output, mean squared error loss', async () => {
    const m = loadModel(join(FIXTURES, 'bert'), { task: 'regression' });
    assert.equal(m.numLabels, 1);
    // The folder's 3-class classifier does not fit a 1-output head: it is created anew; the pooler is kept.
    assert.deepEqual(Object.keys(m.created).sort(), ['classifier.bias', 'classifier.weight']);
    const s = await openInline(m.graph, { device: 'cpu' });
    const ids = [
      [2, 10, 11, 3],
      [2, 12, 3, 0],
    ];
    const out = await s.run({
      input_ids: i64(ids),
      attention_mask: i64([
        [1, 1, 1, 1],
        [1, 1, 1, 0],
      ]),
      token_type_ids: i64([
        [0, 0, 0, 0],
        [0, 0, 0, 0],
      ]),
      labels: { dtype: 'float32', shape: [2], data: Float32Array.of(0.5, -1) },
    });
    assert.deepEqual(out.logits.shape, [2, 1]);
    const p = f64(out.logits);
    const mse = ((p[0] - 0.5) ** 2 + (p[1] + 1) ** 2) / 2;
    assert.ok(Math.abs(f64(out[m.loss])[0] - mse) < 1e-6);
    await s.release();
  });

  test('a folder head of the right size is loaded, not created', () => {
    const m = loadModel(join(FIXTURES, 'bert'));
    assert.equal(m.numLabels, 3);
    assert.deepEqual(Object.keys(m.created), []);
  });

  for (const name of ['gpt2', 'llama', 'qwen2']) {
    test(`${name} classification reads the last real token, left or right padded`, async () => {
      const m = loadModel(join(FIXTURES, name), { task: 'classification', numLabels: 3 });
      assert.deepEqual(Object.keys(m.created), ['score.weight']);
      const s = await openInline(m.graph, { device: 'cpu' });
      const a = [11, 12, 13, 14],
        b = [21, 22];
      const labels: HostTensor = { dtype: 'int64', shape: [2], data: BigInt64Array.of(0n, 2n) };
      const run = async (ids: number[][], mask: number[][]) =>
        s.run({
          input_ids: i64(ids),
          attention_mask: i64(mask),
          labels: { ...labels, shape: [ids.length], data: labels.data.slice(0, ids.length) },
        });
      const right = await run(
        [a, [...b, 0, 0]],
        [
          [1, 1, 1, 1],
          [1, 1, 0, 0],
        ],
      );
      const left = await run(
        [a, [0, 0, ...b]],
        [
          [1, 1, 1, 1],
          [0, 0, 1, 1],
        ],
      );
      const alone = await run([b], [[1, 1]]);
      const r = f64(right.logits),
        l = f64(left.logits),
        one = f64(alone.logits);
      for (let c = 0; c < 3; c++) {
        assert.ok(Math.abs(r[3 + c] - one[c]) < 1e-5, `right padding class ${c}: ${r[3 + c]} vs ${one[c]}`);
        assert.ok(Math.abs(l[3 + c] - one[c]) < 1e-5, `left padding class ${c}: ${l[3 + c]} vs ${one[c]}`);
      }
      // Mean cross-entropy of the two rows.
      const ce = (row: Float64Array, k: number, y: number) => {
        const z = Array.from(row.slice(k * 3, k * 3 + 3));
        const mx = Math.max(...z);
        return Math.log(z.reduce((acc, v) => acc + Math.exp(v - mx), 0)) + mx - z[y];
      };
      const want = (ce(r, 0, 0) + ce(r, 1, 2)) / 2;
      assert.ok(Math.abs(f64(right[m.loss])[0] - want) < 1e-5);
      await s.release();
    });
  }
});
