import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildGradients } from '../native/autodiff/backward.js';
import { loadWithDeltas, parseDeltaConfig } from '../native/delta/index.js';
import { reviews } from '../native/demo/corpus.js';
import { toFloat16Bits } from '../native/onnx/dtype.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { openInline } from '../native/runtime/host.js';
import { train } from '../native/train/trainer.js';
import { readReference, relErr } from './support/reference.js';

const FIX = (n: string): string => fileURLToPath(new URL(`./fixtures/models/${n}`, import.meta.url));

test('float16 bits round to nearest even, with subnormals and overflow', () => {
  assert.deepEqual(
    Array.from(
      toFloat16Bits(
        Float32Array.of(1, -2, 0.5, 65504, 70000, 2 ** -24, 2 ** -25 * 1.5, 0, 1 + 2 ** -11, 1 + 3 * 2 ** -11),
      ),
    ),
    [0x3c00, 0xc000, 0x3800, 0x7bff, 0x7c00, 0x0001, 0x0001, 0x0000, 0x3c00, 0x3c02],
  );
});

for (const [name, task] of [
  ['bert', 'classification'],
  ['gpt2', 'causal-lm'],
  ['llama', 'causal-lm'],
  ['t5', 'seq2seq'],
] as const) {
  test(`${name} in mixed precision: matrices in float16, logits and LoRA gradients close to float32`, async () => {
    const dir = FIX(name);
    const ref = readReference(dir);
    const out: Record<string, Record<string, HostTensor>> = {};
    for (const precision of ['float32', 'float16'] as const) {
      const { model, applied } = loadWithDeltas(dir, { task, precision }, parseDeltaConfig({ method: 'lora', r: 4 }));
      const g = model.graph;
      if (precision === 'float16') {
        const half = [...g.initializers.values()].filter(
          (i) =>
            (i.kind === 'host' ? i.tensor : i.ref).dtype === 'float16' &&
            (i.kind === 'host' ? i.tensor : i.ref).shape.length === 2,
        ).length;
        // Task heads (classifier, pooler, score) stay float32: they are small and often trained.
        const matrices = [...model.builder.folder.weights.values()].filter(
          (r) =>
            r.shape.length === 2 &&
            !/classifier|pooler|score/.test(r.name) &&
            !r.name.includes('relative_attention_bias'),
        ).length;
        assert.equal(half, matrices, 'every frozen matrix of the backbone is float16');
        const copies = g.nodes.filter(
          (n) => n.op === 'Cast' && n.outputs[0].endsWith('::float32') && g.value(n.inputs[0]).shape.length === 2,
        );
        assert.equal(copies.length, 0, 'no float32 copies of weight matrices (vectors are upcast: they are small)');
      }
      // Non-zero LoRA B so that A has a gradient too.
      const values: Record<string, HostTensor> = {};
      for (const p of applied.params) {
        const t = applied.initial[p.value];
        values[p.value] = p.name.endsWith('lora_B')
          ? { ...t, data: Float32Array.from({ length: t.data.length }, (_, i) => Math.sin(i) * 0.1) }
          : t;
        g.promoteToInput(p.value);
      }
      const grads = buildGradients(g, { loss: model.loss, wrt: applied.trainable });
      for (const p of applied.params) g.output(grads.get(p.value)!, `grad::${p.name}`);
      const s = await openInline(g, { device: 'cpu' });
      const feeds: Record<string, HostTensor> = { ...values };
      for (const n of model.inputs) {
        if (ref.has(n)) feeds[n] = ref.get(n)!;
        else if (n === 'decoder_attention_mask')
          feeds[n] = {
            dtype: 'int64',
            shape: ref.get('decoder_input_ids')!.shape,
            data: new BigInt64Array(ref.get('decoder_input_ids')!.data.length).fill(1n),
          };
      }
      out[precision] = await s.run(feeds);
      await s.release();
    }
    const e = relErr(out.float16.logits, out.float32.logits);
    assert.ok(e < 1e-2, `logits relative error ${e}`);
    for (const k of Object.keys(out.float32).filter((k) => k.startsWith('grad::'))) {
      const ge = relErr(out.float16[k], out.float32[k]);
      assert.ok(ge < 3e-2, `${k}: relative error ${ge}`);
    }
  });
}

test('training backbone weights is refused in mixed precision; LoRA trains as well as in float32', async () => {
  assert.throws(
    () => loadWithDeltas(FIX('bert'), { precision: 'float16' }, parseDeltaConfig({ method: 'full' })),
    /kept in float16 by mixed precision; training backbone weights needs precision float32/,
  );
  const backbone = fileURLToPath(new URL('../native/demo/backbone', import.meta.url));
  const lab = (xs: { text: string; label: number }[]) =>
    xs.map((x) => ({ text: x.text, label: x.label ? 'positive' : 'negative' }));
  const dir = mkdtempSync(join(tmpdir(), 'ds-fp16-'));
  const r = await train(
    {
      model: backbone,
      task: 'classification',
      labels: ['negative', 'positive'],
      deltas: [{ method: 'lora', r: 8, alpha: 16 }],
      epochs: 15,
      batchSize: 32,
      lr: 5e-3,
      warmup: 0.1,
      maxLength: 32,
      seed: 1,
      device: 'cpu',
      precision: 'float16',
      runDir: dir,
    },
    { train: lab(reviews(800, 2025, 'seen')), validation: lab(reviews(300, 2026, 'unseen')) },
  );
  assert.equal(r.status, 'finished');
  assert.ok(r.metrics.accuracy >= 0.95, `held-out accuracy in mixed precision ${r.metrics.accuracy}`);
  rmSync(dir, { recursive: true });
});
