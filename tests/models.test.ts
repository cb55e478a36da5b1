import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildGradients } from '../native/autodiff/backward.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { loadModel, type BuiltModel, type Task } from '../native/models/index.js';
import { openInline } from '../native/runtime/host.js';
import { addLowRank } from './support/lowrank.js';
import { f64, readReference, relErr } from './support/reference.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const TASK: Record<string, Task> = {
  bert: 'classification',
  roberta: 'classification',
  gpt2: 'causal-lm',
  llama: 'causal-lm',
  qwen2: 'causal-lm',
  t5: 'seq2seq',
  't5-gated': 'seq2seq',
};
const names = existsSync(FIXTURES)
  ? readdirSync(FIXTURES).filter((n) => existsSync(join(FIXTURES, n, 'reference.safetensors')))
  : [];

function feedsFrom(m: BuiltModel, ref: Map<string, HostTensor>): Record<string, HostTensor> {
  const feeds: Record<string, HostTensor> = {};
  for (const name of m.inputs) {
    const t = ref.get(name);
    if (t) feeds[name] = t;
    else if (name === 'decoder_attention_mask') {
      const d = ref.get('decoder_input_ids')!;
      feeds[name] = { dtype: 'int64', shape: d.shape, data: new BigInt64Array(d.data.length).fill(1n) };
    } else throw new Error(`reference lacks input ${name}`);
  }
  return feeds;
}

/** Logits positions that matter: classification rows, or tokens whose attention mask is 1. */
function realPositions(m: BuiltModel, ref: Map<string, HostTensor>): ((i: number) => boolean) | undefined {
  if (m.task !== 'causal-lm') return undefined;
  const mask = f64(ref.get('attention_mask')!);
  const V = ref.get('logits')!.shape[2];
  return (i) => mask[Math.floor(i / V)] === 1;
}

for (const name of names) {
  describe(`${name} equals PyTorch`, () => {
    const dir = join(FIXTURES, name);
    const ref = readReference(dir);

    test('logits and loss within 1e-4; full fine-tuning gradients within 1e-3', async () => {
      const m = loadModel(dir, { task: TASK[name] });
      const g = m.graph;
      const wrt = [...m.builder.weightValues.entries()].filter(([n]) => ref.has(`grad.${n}`));
      const gradNames = [...m.builder.folder.weights.keys()].filter((n) => ref.has(`grad.${n}`));
      assert.equal(wrt.length, gradNames.length, 'every weight with a reference gradient is used by the graph');
      const grads = buildGradients(g, { loss: m.loss, wrt: wrt.map(([, v]) => v.name) });
      for (const [n, v] of wrt) g.output(grads.get(v.name)!, `grad.${n}`);
      const s = await openInline(g, { device: 'cpu' });
      const out = await s.run(feedsFrom(m, ref));
      const keep = realPositions(m, ref);
      const le = relErr(out.logits, ref.get('logits')!, keep);
      assert.ok(le < 1e-4, `logits relative error ${le}`);
      const lossErr = Math.abs(f64(out[m.loss])[0] - f64(ref.get('loss')!)[0]) / Math.abs(f64(ref.get('loss')!)[0]);
      assert.ok(lossErr < 1e-4, `loss ${f64(out[m.loss])[0]} vs ${f64(ref.get('loss')!)[0]}`);
      let worst = 0,
        worstName = '';
      for (const [n] of wrt) {
        const e = relErr(out[`grad.${n}`], ref.get(`grad.${n}`)!, undefined, 1e-5);
        if (e > worst) {
          worst = e;
          worstName = n;
        }
      }
      assert.ok(worst < 1e-3, `gradient of ${worstName}: relative error ${worst}`);
      await s.release();
    });

    test('a low-rank branch on two projections: logits, loss and branch gradients', async () => {
      const m = loadModel(dir, { task: TASK[name] });
      const g = m.graph;
      const modules = [...ref.keys()]
        .filter((k) => k.startsWith('lora.') && k.endsWith('.lora_A'))
        .map((k) => k.slice(5, -7));
      assert.ok(modules.length >= 2, `reference has low-rank modules (${modules.length})`);
      const r = ref.get(`lora.${modules[0]}.lora_A`)!.shape[0];
      const wrt: string[] = [];
      for (const mod of modules) wrt.push(...addLowRank(g, m, mod, r, 8 / r).map((v) => v.name));
      const grads = buildGradients(g, { loss: m.loss, wrt });
      for (const w of wrt) g.output(grads.get(w)!, `grad::${w}`);
      const s = await openInline(g, { device: 'cpu' });
      const feeds = feedsFrom(m, ref);
      for (const w of wrt) feeds[w] = ref.get(w)!;
      const out = await s.run(feeds);
      const logitsOut = out.logits ?? out[g.outputs.find((o) => o.includes('logits'))!];
      const le = relErr(logitsOut, ref.get('lora_logits')!, realPositions(m, ref));
      assert.ok(le < 1e-4, `logits relative error ${le}`);
      const l = f64(out[m.loss])[0],
        lr = f64(ref.get('lora_loss')!)[0];
      assert.ok(Math.abs(l - lr) / Math.abs(lr) < 1e-4, `loss ${l} vs ${lr}`);
      for (const w of wrt) {
        const e = relErr(out[`grad::${w}`], ref.get(`lora_grad.${w.slice(5)}`)!);
        assert.ok(e < 1e-3, `gradient of ${w}: relative error ${e}`);
      }
      await s.release();
    });
  });
}

test('model fixtures are present', () => {
  assert.ok(names.length >= 6, `found ${names.join(', ')}`);
});
