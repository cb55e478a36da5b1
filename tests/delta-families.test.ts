import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadWithDeltas, parseDeltaConfig } from '../native/delta/index.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { StepRunner } from '../native/train/runner.js';
import { buildTrainStep } from '../native/train/step.js';
import type { BuiltModel } from '../native/models/index.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const FAMILIES = ['bert', 'roberta', 'gpt2', 'llama', 'qwen2', 't5', 't5-gated'];
const METHODS: Record<string, object> = {
  lora: { method: 'lora', r: 2 },
  ia3: { method: 'ia3' },
  bitfit: { method: 'bitfit' },
  adapter: { method: 'adapter', bottleneck_dim: 4 },
  parallel_adapter: { method: 'parallel_adapter', bottleneck_dim: 4 },
  low_rank_adapter: { method: 'low_rank_adapter', reduction_factor: 8 },
  compacter: { method: 'compacter', reduction_factor: 4 },
  soft_prompt: { method: 'soft_prompt', soft_token_num: 3, init: 'vocab' },
  prefix: { method: 'prefix', prefix_token_num: 2, mid_dim: 8 },
  'head-only': { method: 'head-only' },
  full: { method: 'full' },
};
// Where a method does not apply, the error that says so.
const REFUSED: Record<string, RegExp> = {
  'gpt2/head-only': /no separate task head/,
  'qwen2/head-only': /no separate task head/,
  't5/head-only': /no separate task head/,
};

function batch(m: BuiltModel): Record<string, HostTensor> {
  const ids = (rows: number[][]): HostTensor => ({
    dtype: 'int64',
    shape: [rows.length, rows[0].length],
    data: BigInt64Array.from(rows.flat().map(BigInt)),
  });
  const f: Record<string, HostTensor> = {
    input_ids: ids([
      [5, 6, 7, 8],
      [9, 10, 11, 0],
    ]),
    attention_mask: ids([
      [1, 1, 1, 1],
      [1, 1, 1, 0],
    ]),
  };
  if (m.inputs.includes('token_type_ids'))
    f.token_type_ids = ids([
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ]);
  if (m.task === 'seq2seq') {
    f.decoder_input_ids = ids([
      [0, 5, 6],
      [0, 7, 0],
    ]);
    f.decoder_attention_mask = ids([
      [1, 1, 1],
      [1, 1, 0],
    ]);
    f.labels = ids([
      [5, 6, 1],
      [7, 1, -100],
    ]);
  } else if (m.task === 'causal-lm')
    f.labels = ids([
      [5, 6, 7, 8],
      [9, 10, 11, -100],
    ]);
  else f.labels = ids([[1], [0]]).shape && { dtype: 'int64', shape: [2], data: BigInt64Array.of(1n, 0n) };
  return f;
}

for (const family of FAMILIES) {
  test(`every delta method builds and trains on ${family}`, async () => {
    for (const [name, cfg] of Object.entries(METHODS)) {
      const refused = REFUSED[`${family}/${name}`];
      if (refused) {
        assert.throws(
          () => loadWithDeltas(join(FIXTURES, family), {}, parseDeltaConfig(cfg)),
          refused,
          `${family}/${name}`,
        );
        continue;
      }
      const { model, applied } = loadWithDeltas(join(FIXTURES, family), {}, parseDeltaConfig(cfg));
      assert.ok(applied.trainable.length > 0, `${family}/${name} trains something`);
      const graphs = buildTrainStep({
        forward: model.graph,
        loss: model.loss,
        trainable: applied.trainable,
        optimizer: { weightDecay: 0 },
      });
      const runner = await StepRunner.open(graphs, applied.initial, { inWorker: false });
      const f = batch(model);
      const a = await runner.step([f], 0.05);
      const b = await runner.step([f], 0.05);
      assert.ok(Number.isFinite(a.loss) && Number.isFinite(b.loss), `${family}/${name}: losses ${a.loss}, ${b.loss}`);
      assert.ok(a.gradNorm > 0, `${family}/${name}: gradient norm ${a.gradNorm}`);
      await runner.release();
    }
  });
}
